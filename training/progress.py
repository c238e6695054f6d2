"""Progress bars with time left for the desktop's long steps (tqdm on stderr), and none where nobody watches.

A bar is drawn when stderr is a terminal, but not under CI or pytest; ``SMARTBIN_PROGRESS=1``
draws bars anyway (a terminal smartbin cannot see, such as ``ssh -T``), ``SMARTBIN_PROGRESS=0``
never, and :func:`off` turns them off for a block (``smartbin train --quiet``). Bars write through
:data:`~smartbin.device.vision.native.python_stderr`, so they survive a silenced fd 2 (a decode,
the converter); while one is open, log lines and :func:`echo`'s lines are printed above it.

It lives in ``training`` because training draws most of the bars; ``converters`` and ``deploy``
import it from here, as they import the rest of ``training``. tqdm comes with every install (the
TFLite runtime of a bin needs it anyway).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

from tqdm import tqdm

from smartbin.device.vision.native import python_stderr

ENV = "SMARTBIN_PROGRESS"

T = TypeVar("T")

_lock = threading.Lock()
_off = 0  # callers inside off()
_open = 0  # bars drawn and not yet closed
_handlers: list[tuple[logging.StreamHandler, Any]] = []  # log handlers moved above the bars, their streams


def wanted() -> bool:
    """Whether a new bar is drawn: ``SMARTBIN_PROGRESS`` if set, else a terminal outside CI and pytest."""
    if _off:
        return False
    setting = os.environ.get(ENV, "").strip()
    if setting:
        return setting != "0"
    if os.environ.get("CI") or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


@contextmanager
def off() -> Iterator[None]:
    """No new bars inside the block."""
    global _off
    with _lock:
        _off += 1
    try:
        yield
    finally:
        with _lock:
            _off -= 1


class Bar(tqdm):
    """A tqdm bar on the real stderr that moves log lines above itself while it is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._above = not self.disable
        if self._above:
            _move_logs(+1)

    def close(self) -> None:
        super().close()
        if getattr(self, "_above", False):  # once, however often tqdm closes it
            self._above = False
            _move_logs(-1)


def bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "photo",
    leave: bool = False,
) -> Bar:
    """A bar over ``iterable`` (or ``total`` steps for :meth:`~tqdm.tqdm.update`): count, rate and
    time left; it draws nothing when :func:`wanted` says no. ``leave``: keep the finished bar on screen."""
    encoding = str(getattr(sys.stderr, "encoding", "") or "")
    return Bar(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        file=python_stderr,
        disable=not wanted(),
        ncols=shutil.get_terminal_size().columns,
        ascii=not encoding.lower().replace("-", "").startswith("utf8"),
        smoothing=0.1,
    )


def echo(line: str, file: IO[str] | None = None) -> None:
    """Print ``line`` (to stdout by default) above any open bar."""
    with tqdm.external_write_mode(file=python_stderr):
        print(line, file=file or sys.stdout, flush=True)


class _AboveBars:
    """A log stream that clears the bars, writes, and draws them again."""

    def write(self, text: str) -> int:
        with tqdm.external_write_mode(file=python_stderr):
            return python_stderr.write(text)

    def flush(self) -> None:
        python_stderr.flush()


def _move_logs(step: int) -> None:
    """Count open bars; the first moves the console's log handlers above the bars, the last moves them back."""
    global _open
    with _lock:
        _open += step
        if step > 0 and _open == 1:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream in (
                    python_stderr,
                    sys.stderr,
                ):
                    _handlers.append((handler, handler.setStream(_AboveBars())))
        elif step < 0 and _open == 0:
            while _handlers:
                handler, stream = _handlers.pop()
                handler.setStream(stream)
