"""The bin's saved item photos: a bounded store that keeps the best training data longest, and
the daemon's view of it (why photos are not saved, how many could not be)."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import os_error_reason
from .recorder import Faults
from .settings import ImagesConfig

log = logging.getLogger(__name__)

# The bin's own photos are named smartbin-<UTC time to the microsecond>-<label>.jpg; only files
# named exactly so are counted and pruned, so photos a person puts in images_dir are left alone.
_OWN_IMAGE = re.compile(r"smartbin-\d{8}T\d{12}Z-[A-Za-z0-9_-]+\.jpg")


def image_name(taken: datetime, label: str | None) -> str:
    """``smartbin-20261122T100000123456Z-can.jpg``: sorts by time; odd label characters become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", label) if label else "none"
    return f"smartbin-{taken.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{safe}.jpg"


def photo_reserve(disk_bytes: int) -> int:
    """Free space below which photos are not saved: 50 MB, or 5 % of a smaller disk."""
    return min(50_000_000, disk_bytes // 20)


class ImageStore:
    """Saves item photos as JPEG; once over ``max_count`` files or ``max_mb``, removes the oldest
    of its own: first those of confident items nobody reviewed, then (only if there is no other
    left) photos worth keeping, never the one just saved.

    Worth keeping are the photos of uncertain items (reason ``low_confidence``) and of reviewed
    ones: the bin's best training data. With ``events_db`` the store learns which they are from
    the event log (:class:`_WorthKeeping`); without it all photos count alike.
    """

    def __init__(
        self, directory: Path, *, max_count: int, max_mb: float, events_db: Path | None = None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_count = max_count
        self.max_bytes = int(max_mb * 1_000_000)
        own = sorted(p for p in directory.iterdir() if _OWN_IMAGE.fullmatch(p.name) and p.is_file())
        # name -> (path, size), oldest first; names sort by time
        self._plain: OrderedDict[str, tuple[Path, int]] = OrderedDict(
            (p.name, (p, p.stat().st_size)) for p in own
        )
        self._kept: dict[str, tuple[Path, int]] = {}
        self._bytes = sum(size for _, size in self._plain.values())
        self._worth = _WorthKeeping(events_db) if events_db is not None else None

    def save(self, rgb: np.ndarray, taken: datetime, label: str | None) -> Path:
        """Write the photo; OSError saying why not. Photos give way first: with less free space than
        :func:`photo_reserve` they are not written, so the event log keeps room to record."""
        path = self.directory / image_name(taken, label)
        disk = shutil.disk_usage(self.directory)
        reserve = photo_reserve(disk.total)
        if disk.free < reserve:
            raise OSError(
                f"no space left for photos: {disk.free // 1_000_000} MB free on the disk of {self.directory}, "
                f"photos pause below {reserve // 1_000_000} MB to keep room for the event log"
            )
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]):
            path.unlink(missing_ok=True)  # a photo cut short by a full disk is no photo
            raise OSError(f"cannot write {path}")
        size = path.stat().st_size
        self._plain[path.name] = (path, size)
        self._bytes += size
        self._prune(path.name)
        return path

    def newer_than(self, ts: str) -> list[tuple[Path, datetime, str | None]]:
        """The store's photos taken after the ISO time ``ts``: (path, when, label), oldest first."""
        after = datetime.fromisoformat(ts)
        out = []
        for name, (path, _) in sorted((*self._plain.items(), *self._kept.items())):
            stamp, _, label = name.removeprefix("smartbin-").removesuffix(".jpg").partition("-")
            taken = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
            taken = taken.replace(microsecond=taken.microsecond // 1000 * 1000)  # as an event's ts has it
            if taken > after:
                out.append((path, taken, None if label == "none" else label))
        return out

    def _prune(self, newest: str) -> None:
        if not self._over():
            return
        if self._worth is not None:
            for name in self._worth.new_names():
                if name in self._plain:
                    self._kept[name] = self._plain.pop(name)
        while self._over() and self.count > 1:
            if len(self._plain) > (newest in self._plain):
                _, (path, size) = self._plain.popitem(last=False)
            else:
                path, size = self._kept.pop(min(self._kept))
            path.unlink(missing_ok=True)
            self._bytes -= size

    def _over(self) -> bool:
        return self.count > self.max_count or self._bytes > self.max_bytes

    @property
    def count(self) -> int:
        return len(self._plain) + len(self._kept)

    @property
    def total_bytes(self) -> int:
        return self._bytes


class _WorthKeeping:
    """The photos of uncertain and reviewed items, read from the event log as they come.

    Each call reads only rows added since the last one (by id, so it costs microseconds on the
    item's path); a log replaced by a fresh one (a corrupt one moved aside) is read again from the
    start. A log that cannot be read gives nothing: pruning is then oldest first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._events = 0  # rows up to these ids are read
        self._reviews = 0

    def new_names(self) -> set[str]:
        try:
            if self._db is None:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            return self._read(self._db)
        except sqlite3.Error:
            if self._db is not None:
                self._db.close()
            self._db = None
            return set()

    def _read(self, db: sqlite3.Connection) -> set[str]:
        # the bounds make a row recorded meanwhile wait for the next call, never be skipped
        last_event = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        last_review = db.execute("SELECT COALESCE(MAX(id), 0) FROM reviews").fetchone()[0]
        if last_event < self._events or last_review < self._reviews:  # a fresh log
            self._events = self._reviews = 0
        rows = db.execute(
            "SELECT image_path FROM events WHERE id > ? AND id <= ? AND reason = 'low_confidence'"
            " AND image_path IS NOT NULL",
            (self._events, last_event),
        ).fetchall()
        rows += db.execute(
            "SELECT e.image_path FROM reviews r JOIN events e ON e.id = r.event_id"
            " WHERE r.id > ? AND r.id <= ? AND e.image_path IS NOT NULL",
            (self._reviews, last_review),
        ).fetchall()
        self._events, self._reviews = last_event, last_review
        return {Path(path).name for (path,) in rows}


class Photos:
    """The daemon's photos: the store when ``[images] save`` is on and its folder can be used,
    why not when it cannot, and the photos that could not be saved. Photos never stop sorting."""

    def __init__(self, config: ImagesConfig, directory: Path, events_db: Path) -> None:
        self.config = config
        self.directory = directory
        self.events_db = events_db
        self.store: ImageStore | None = None
        self.error: str | None = None  # why photos are not saved at all
        self.faults = Faults()  # photos that could not be saved

    def open(self) -> None:
        try:
            self.store = ImageStore(
                self.directory,
                max_count=self.config.max_count,
                max_mb=self.config.max_mb,
                events_db=self.events_db,  # uncertain and reviewed photos are kept longest
            )
        except OSError as exc:
            self.error = f"cannot use {self.directory}: {os_error_reason(exc)}"
            log.error("NOT SAVING PHOTOS (the bin keeps sorting): %s", self.error)

    def save(self, rgb: np.ndarray, taken: datetime, label: str | None) -> tuple[str | None, str | None]:
        """(the photo's path, None), or (None, why it was not saved); (None, None) without a store."""
        if self.store is None:
            return None, None
        try:
            return str(self.store.save(rgb, taken, label)), None
        except (OSError, ValueError) as exc:
            self.faults.note(str(exc))
            return None, str(exc)

    def warnings(self) -> list[str]:
        if self.error:
            return [f"not saving photos: {self.error}"]
        f = self.faults
        return (
            [f"{f.count} photo(s) not saved, the last at {f.last_error_at}: {f.last_error}"]
            if f.count
            else []
        )

    def status(self) -> dict[str, Any]:
        return {
            "dir": str(self.directory),
            "saving": self.store is not None,
            "count": self.store.count if self.store else 0,
            "bytes": self.store.total_bytes if self.store else 0,
            "not_saved": self.faults.count,
            "last_error": self.error or self.faults.last_error,
            "last_error_at": self.faults.last_error_at,
        }
