"""One daemon per state directory: an exclusive ``flock`` on ``<state_dir>/daemon.lock``.

The lock is held for the daemon's whole life and the kernel drops it when the process ends,
however it ends (a crash or ``kill -9`` included), so there is no stale lock to clean up. The
file holds the PID of its holder so that a second daemon can say who is in the way. The file
itself is never removed: removing it while another process opens it would let two hold "it".
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import SmartbinError
from .state import pid_alive

LOCK_NAME = "daemon.lock"
_PID_WAIT_S = 0.5  # how long to wait for a holder that has just locked to write its PID


class StateDirLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; :class:`SmartbinError` naming the holder if another process has it.

        An ``OSError`` means the lock file cannot be made (the state directory cannot be written).
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SmartbinError(
                f"another smartbin daemon ({f'pid {holder}' if holder else 'pid unknown'}) already runs "
                f"on {self.state_dir}; stop it first, or give this one its own paths.state_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_held(state_dir: Path) -> bool | None:
    """Whether a daemon holds ``state_dir``'s lock now: the kernel's word, which a reused PID or a
    killed, unreaped daemon cannot fool. None when the lock file cannot be opened to ask."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a shared lock taken just now
    return False


def _holder(fd: int) -> int | None:
    """The PID in the lock file, once it names a live process (the holder may be writing it)."""
    deadline = time.monotonic() + _PID_WAIT_S
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() and pid_alive(int(text)):
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
