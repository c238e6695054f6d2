"""The event log (SQLite, one row per item) and the bounded store of saved item photos.

The database is in WAL mode so that readers (``smartbin events``, ``smartbin collect``) can
copy it while the daemon writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,            -- lid closed, ISO 8601 UTC
    label TEXT,                  -- top-1 label (NULL when nothing could be classified)
    confidence REAL,
    scores TEXT NOT NULL,        -- JSON object label -> mean score over the frames
    compartment TEXT,            -- where the item went (NULL: the servos did not move)
    reason TEXT NOT NULL,        -- sorted, low_confidence, unmapped, unknown_label, no_frame
    model_version TEXT,
    frames INTEGER NOT NULL,     -- frames classified (voted over)
    capture_ms REAL,
    inference_ms REAL,
    latency_ms REAL,             -- lid closed -> servo command, settle delay excluded
    cycle_ms REAL,               -- lid closed -> servos home and detached
    image_path TEXT,
    source TEXT,                 -- where the frame came from, when the camera says (folder camera)
    error TEXT                   -- what went wrong, if anything
)
"""


@dataclass
class ItemEvent:
    ts: str
    label: str | None
    confidence: float | None
    scores: dict[str, float]
    compartment: str | None
    reason: str
    model_version: str | None
    frames: int
    capture_ms: float
    inference_ms: float
    latency_ms: float
    cycle_ms: float = 0.0
    image_path: str | None = None
    source: str | None = None
    error: str | None = None
    id: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = [name for name in ItemEvent.__dataclass_fields__ if name != "id"]


class EventLog:
    """Appends item events; one connection, used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def record(self, event: ItemEvent) -> int:
        row = event.to_dict()
        row["scores"] = json.dumps(row["scores"])
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        with self._db:
            cursor = self._db.execute(
                f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({placeholders})", row
            )
        event.id = cursor.lastrowid
        return event.id

    def close(self) -> None:
        self._db.close()


def read_events(path: Path, *, limit: int = 20) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``limit`` most recent events (oldest first) and totals, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        events = [dict(row) | {"scores": json.loads(row["scores"])} for row in reversed(rows)]
        total, first, last, errors = db.execute(
            "SELECT COUNT(*), MIN(ts), MAX(ts), COUNT(error) FROM events"
        ).fetchone()
        by_compartment = dict(
            db.execute(
                "SELECT COALESCE(compartment, 'none'), COUNT(*) FROM events GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        by_reason = dict(db.execute("SELECT reason, COUNT(*) FROM events GROUP BY 1 ORDER BY 1").fetchall())
    finally:
        db.close()
    totals = {
        "items": total,
        "first": first,
        "last": last,
        "errors": errors,
        "by_compartment": by_compartment,
        "by_reason": by_reason,
    }
    return events, totals


class ImageStore:
    """Saves item photos as JPEG; removes the oldest once over ``max_count`` files or ``max_mb``."""

    def __init__(self, directory: Path, *, max_count: int, max_mb: float) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_count = max_count
        self.max_bytes = int(max_mb * 1_000_000)
        existing = sorted(directory.glob("*.jpg"), key=lambda p: (p.stat().st_mtime, p.name))
        self._files: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in existing)
        self._bytes = sum(size for _, size in self._files)

    def save(self, rgb: np.ndarray, name: str) -> Path:
        path = self.directory / f"{name}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]):
            raise OSError(f"cannot write {path}")
        size = path.stat().st_size
        self._files.append((path, size))
        self._bytes += size
        self._prune()
        return path

    def _prune(self) -> None:
        while self._files and (len(self._files) > self.max_count or self._bytes > self.max_bytes):
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def total_bytes(self) -> int:
        return self._bytes
