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

    Python's own ``sys.stderr`` is flushed first, so nothing already printed is lost. Log lines that
    other threads write meanwhile through :data:`python_stderr` (the CLI's logging does) still reach
    the real stderr; anything else written to fd 2 meanwhile is lost with the chatter.
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


class _PythonStderr:
    """A stream for Python's own lines (logging) that reaches the real stderr even while it is silenced.

    While a decode elsewhere has fd 2 pointing at /dev/null, writes go to the saved descriptor; the
    lock keeps a write and the switch of fd 2 from interleaving.
    """

    def write(self, text: str) -> int:
        with _lock:
            if _saved_fd is None:
                written = sys.stderr.write(text)
                sys.stderr.flush()
                return written
            data = text.encode(getattr(sys.stderr, "encoding", None) or "utf-8", "backslashreplace")
            while data:
                data = data[os.write(_saved_fd, data) :]
            return len(text)

    def flush(self) -> None:
        with _lock:
            if _saved_fd is None:
                sys.stderr.flush()


python_stderr = _PythonStderr()


def import_quietly(name: str) -> ModuleType:
    """Import a module whose native start-up lines would reach the terminal (``tensorflow``).

    For the desktop commands: nothing under ``smartbin.device`` imports TensorFlow.
    """
    with native_stderr_silenced():
        return importlib.import_module(name)
