"""Keeping native libraries' chatter off the user's terminal.

Libraries written in C and C++ (the TFLite runtime, libjpeg, OpenCV, TensorFlow) print notes
and warnings straight to file descriptor 2, past Python's logging: "Created TensorFlow Lite
XNNPACK delegate", "Corrupt JPEG data: ...", oneDNN and CPU-feature notes. They bury the one
line a user needs, so smartbin hides them unless asked (``-v``/``--debug`` call
:func:`show_native_output`).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_lock = threading.Lock()
_depth = 0  # callers inside native_stderr_silenced(), over all threads
_saved_fd: int | None = None  # the real stderr while silenced
_shown = False


def show_native_output(show: bool) -> None:
    """Let native libraries' output through (``True``: for ``-v`` and ``--debug``) or hide it."""
    global _shown
    _shown = show


def quiet_native_logs() -> None:
    """Ask TensorFlow and OpenCV to log errors only; call before either is imported.

    A variable the user has set wins. TensorFlow's own start-up lines ignore these and need
    :func:`import_quietly`.
    """
    if _shown:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to fd 2 to /dev/null for the duration (nested and thread-safe).

    Python's own ``sys.stderr`` is flushed first, so nothing already printed is lost; a log line
    another thread writes meanwhile is lost with the chatter, so keep the block short.
    """
    global _depth, _saved_fd
    if _shown:
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to hide
                saved = None
            if saved is not None:
                with open(os.devnull, "wb") as devnull:
                    os.dup2(devnull.fileno(), 2)
            _saved_fd = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


def import_quietly(name: str) -> ModuleType:
    """Import a module whose native start-up lines would reach the terminal (``tensorflow``).

    For the desktop commands: nothing under ``smartbin.device`` imports TensorFlow.
    """
    with native_stderr_silenced():
        return importlib.import_module(name)
