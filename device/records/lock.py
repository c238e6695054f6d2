"""One daemon per state directory, event log and photo folder: exclusive ``flock``s on
``<state_dir>/daemon.lock`` and on a hidden ``.<name>.lock`` beside the event log and beside the
photo folder (two bins with their own state directories but one ``events_db`` or ``images_dir``
would interleave one log and overrun each other's photo limits).

The lock is held for the daemon's whole life and the kernel drops it when the process ends,
however it ends (a crash or ``kill -9`` included), so there is no stale lock to clean up. The
file holds the PID of its holder so that a second daemon can say who is in the way; a shared
path's lock also names the state directory of the bin that last used it, so that
``smartbin config check`` can warn of two configs that share a path even while one is stopped.
The file itself is never removed: removing it while another process opens it would let two hold
"it".
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import SmartbinError
from .settings import ImagesConfig, PathsConfig
from .state import pid_alive

LOCK_NAME = "daemon.lock"
_PID_WAIT_S = 0.5  # how long to wait for a holder that has just locked to write its PID


def shared_path_lock(path: Path) -> Path:
    """The lock file of a path a bin writes (``events.db`` -> ``.events.db.lock`` beside it)."""
    return path.parent / f".{path.name}.lock"


def shared_paths(paths: PathsConfig, images: ImagesConfig) -> dict[str, Path]:
    """The paths outside its state directory that a bin writes, by config key."""
    shared = {"paths.events_db": paths.events_db}
    if images.save:
        shared["paths.images_dir"] = paths.images_dir
    return shared


def other_bin_on(path: Path, state_dir: Path) -> str | None:
    """Who else uses ``path`` (a shared path a bin writes), in words, or None: the bin with another
    state directory that last locked it, running (with its PID) or not."""
    try:
        fd = os.open(shared_path_lock(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pid, _, owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").partition("\n")
        owner = owner.strip()
        if not owner or Path(owner).resolve() == state_dir.resolve():
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"the bin with state directory {owner} (running, pid {pid.strip() or 'unknown'})"
        except OSError:
            pass
        return f"the bin with state directory {owner} (not running now)"
    finally:
        os.close(fd)


class StateDirLock:
    def __init__(self, state_dir: Path, shared: dict[str, Path] | None = None) -> None:
        """``shared``: other paths this daemon writes, by config key (``paths.events_db``)."""
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self.shared = shared or {}
        self._fds: list[int] = []

    def acquire(self) -> None:
        """Take the locks; :class:`SmartbinError` naming the holder if another process has one.

        An ``OSError`` means the state directory's lock file cannot be made (it cannot be written).
        A shared path's lock that cannot be made (a read-only folder) is skipped: the bin sorts on.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take(
            self.path, f"runs on {self.state_dir}; stop it first, or give this one its own paths.state_dir"
        )
        for key, path in self.shared.items():
            lock = shared_path_lock(path)
            try:
                lock.parent.mkdir(parents=True, exist_ok=True)
                self._take(lock, f"uses {path}; give each bin its own {key}", owner=self.state_dir)
            except SmartbinError:
                self.release()
                raise
            except OSError:
                continue

    def _take(self, path: Path, clash: str, owner: Path | None = None) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SmartbinError(
                f"another smartbin daemon ({f'pid {holder}' if holder else 'pid unknown'}) already {clash}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{owner or ''}".encode(), 0)
        self._fds.append(fd)

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


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
        text = os.pread(fd, 32, 0).decode("ascii", "replace").partition("\n")[0].strip()
        if text.isdigit() and pid_alive(int(text)):
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
