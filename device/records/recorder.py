"""The daemon's event log, kept going whatever state the file is in.

No state of the event log stops the bin from sorting:

- a corrupt database (garbage after a power cut on an SD card, a truncated file, a damaged page),
  found when it is opened or later while recording, is moved aside with its ``-wal`` and ``-shm``
  as ``<name>.corrupt-<UTC time>`` (never deleted) and a fresh one is started;
- one that cannot be opened at all (a directory, a state directory that cannot be written) leaves
  the bin sorting without records;
- an item that cannot be written (disk full, I/O error) is counted;
- while another program holds the log's write lock (an open ``sqlite3`` shell, DB Browser), a
  write waits at most :data:`WAIT_S`; the item waits in memory, in order, and is written between
  items once the lock is let go (:meth:`EventRecords.flush`). None is dropped unless
  :data:`MAX_WAITING` items wait.

Each of these is logged and shown in status.json (:meth:`EventRecords.status`, :meth:`warnings`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import os_error_reason
from .events import EventLog, ItemEvent
from .state import now_iso

log = logging.getLogger(__name__)

_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
WAIT_S = 0.05  # what a write may cost the item cycle while another program holds the log
STOP_WAIT_S = 5.0  # what the last writes may wait for at shutdown
MAX_WAITING = 10_000  # items kept in memory while the log is held; beyond, the oldest are counted lost
_SIDE_FILES = ("-wal", "-shm")
_SQLITE_HEADER = b"SQLite format 3\0"


@dataclass
class Faults:
    """How often something failed since the daemon started, and the last failure."""

    count: int = 0
    last_error: str | None = None
    last_error_at: str | None = None

    def note(self, error: str) -> None:
        self.count += 1
        self.last_error = error
        self.last_error_at = now_iso()


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock ("database is locked")."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _BUSY_CODES


def is_corruption(exc: sqlite3.Error) -> bool:
    """A damaged database (as opposed to a full disk, an I/O error or a locked file)."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _CORRUPT_CODES


def move_aside(path: Path) -> Path:
    """Rename ``path`` and its ``-wal``/``-shm`` to ``<name>.corrupt-<UTC time>[-N]``; nothing is removed."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while any(os.path.lexists(f"{target}{suffix}") for suffix in ("", *_SIDE_FILES)):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    for suffix in _SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{target}{suffix}")
    return target


class EventRecords:
    """Records items in the event log at ``path``; no method raises."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log: EventLog | None = None
        self.unavailable: str | None = None  # why no item is recorded at all
        self.faults = Faults()  # items not recorded, and why
        self.moved_aside: list[dict[str, str]] = []
        self.waiting: deque[ItemEvent] = deque()  # items held back while another program locks the log
        self.held_since: str | None = None

    def open(self) -> None:
        try:
            self.log = self._open()
            self.log.wait_at_most(WAIT_S)
        except (OSError, sqlite3.Error) as exc:
            self._give_up(f"cannot open the event log {self.path}: {_reason(exc)}")

    def _open(self) -> EventLog:
        if self.path.is_dir():  # SQLite would only say "unable to open database file"
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        problem = _not_sqlite(self.path)  # before SQLite opens it and drops its -wal as invalid
        if problem is None:
            events = None
            try:
                events = EventLog(self.path, verify=True)
                problem = events.problem
            except sqlite3.Error as exc:
                _close(events)
                if not is_corruption(exc):
                    raise
                problem = str(exc)
            else:
                if problem is None:
                    return events
                _close(events)  # before the rename: closing later would remove the fresh log's -wal
        self._move_aside(problem)
        return EventLog(self.path)

    def _move_aside(self, problem: str) -> None:
        aside = move_aside(self.path)
        self.moved_aside.append({"path": str(aside), "at": now_iso(), "reason": problem})
        log.error(
            "the event log %s is corrupt (%s): moved it aside to %s and started a fresh one",
            self.path,
            problem,
            aside,
        )

    def _give_up(self, why: str) -> None:
        self.log = None
        self.unavailable = why
        log.error("NOT RECORDING ITEMS (the bin keeps sorting): %s", why)

    def record(self, event: ItemEvent) -> bool:
        """Append the item (after any that wait); False when it is not written now: counted and
        logged, or waiting for another program to let go of the log."""
        if self.log is None:
            self.faults.note(self.unavailable or "the event log is closed")
            return False
        if self.waiting:
            self._keep(event)
            return self.flush() and not self.waiting
        return self._write(event)

    def flush(self) -> bool:
        """Write the items that wait, oldest first; False while the log is still held."""
        while self.waiting and self.log is not None:
            try:
                self.log.record(self.waiting[0])
            except (sqlite3.Error, ValueError) as exc:
                if isinstance(exc, sqlite3.Error) and is_busy(exc):
                    return False
                self._write(self.waiting.popleft())  # another failure: counted (or handled) there
                continue
            self.waiting.popleft()
        if self.held_since is not None and not self.waiting:
            log.info("the event log is free again: every waiting item is recorded")
            self.held_since = None
        return True

    def _keep(self, event: ItemEvent) -> None:
        if len(self.waiting) >= MAX_WAITING:
            self.faults.note(f"{MAX_WAITING} items waited for the event log, which another program holds")
            self.waiting.popleft()
        self.waiting.append(event)

    def _write(self, event: ItemEvent) -> bool:
        try:
            self.log.record(event)
            return True
        except ValueError as exc:  # a value SQLite's UTF-8 cannot take (the file stays sound)
            self.faults.note(str(exc))
            log.error("cannot record item: %s", exc)
            return False
        except sqlite3.Error as exc:
            if is_busy(exc):
                if self.held_since is None:
                    self.held_since = now_iso()
                    log.warning(
                        "another program holds the event log %s: items wait and are recorded later", self.path
                    )
                self._keep(event)
                return False
            if not is_corruption(exc):
                self.faults.note(str(exc))
                log.error("cannot record item: %s", exc)
                return False
            problem = str(exc)
        self.close()
        try:
            self._move_aside(problem)
            self.log = EventLog(self.path)
            self.log.wait_at_most(WAIT_S)
            self.log.record(event)
            return True
        except (OSError, sqlite3.Error) as exc:
            self._give_up(f"the event log {self.path} was corrupt and cannot be replaced: {_reason(exc)}")
            self.faults.note(self.unavailable)
            return False

    def close(self) -> None:
        """Write what waits (for at most :data:`STOP_WAIT_S`), then close; what still waits is counted."""
        if self.waiting and self.log is not None:
            with contextlib.suppress(sqlite3.Error):
                self.log.wait_at_most(STOP_WAIT_S)
            self.flush()
        for _ in range(len(self.waiting)):
            self.faults.note(f"the event log {self.path} was still held by another program at shutdown")
        self.waiting.clear()
        _close(self.log)
        self.log = None

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "recording": self.unavailable is None,
            "not_recorded": self.faults.count,
            "last_error": self.faults.last_error,
            "last_error_at": self.faults.last_error_at,
            "moved_aside": self.moved_aside,
            "waiting": len(self.waiting),
            "held_since": self.held_since,
        }

    def warnings(self) -> list[str]:
        out = [
            f"the event log was corrupt ({m['reason']}): moved aside to {m['path']} at {m['at']}; "
            "a fresh one was started"
            for m in self.moved_aside
        ]
        if self.waiting:
            out.append(
                f"another program holds the event log {self.path} (since {self.held_since}): "
                f"{len(self.waiting)} item(s) wait in memory and are recorded once it lets go; close it"
            )
        if self.unavailable:
            out.append(f"not recording items: {self.unavailable}")
        elif self.faults.count:
            out.append(
                f"{self.faults.count} item(s) not recorded, the last at {self.faults.last_error_at}: "
                f"{self.faults.last_error}"
            )
        return out


def _close(events: EventLog | None) -> None:
    if events is not None:
        with contextlib.suppress(sqlite3.Error):  # a damaged file may fail its last checkpoint
            events.close()


def _not_sqlite(path: Path) -> str | None:
    """'file is not a database' when ``path`` has something in it but no SQLite header."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return None
    return "file is not a database" if head and head != _SQLITE_HEADER else None


def _reason(exc: OSError | sqlite3.Error) -> str:
    return os_error_reason(exc) if isinstance(exc, OSError) else str(exc)
