"""Ctrl-C and SIGTERM that a command cannot lose.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised inside a weakref
callback or a ``__del__`` (TensorFlow runs many), it is printed as "Exception ignored" and dropped,
and the command runs on as if nobody had asked it to stop, then replaces what it was told to leave
alone. The CLI's handlers therefore also note the signal here, and :func:`raise_if_noted` raises it
again at safe points: after each training batch, and before a finished result is moved into place.
"""

from __future__ import annotations

import signal
from typing import NoReturn

from .errors import Terminated

_noted: int | None = None


def note(signum: int) -> None:
    """Remember that ``signum`` (SIGINT or SIGTERM) arrived."""
    global _noted
    _noted = signum


def forget() -> None:
    """Forget a noted signal (when the command it was meant for has ended)."""
    global _noted
    _noted = None


def raise_for(signum: int) -> NoReturn:
    """Raise what ``signum`` means to a command: :class:`Terminated` for SIGTERM, else ``KeyboardInterrupt``."""
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def raise_if_noted() -> None:
    """Raise the noted signal again (:func:`raise_for`), if one was noted."""
    if _noted is not None:
        raise_for(_noted)
