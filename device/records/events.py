"""The event log (SQLite, one row per item) and the bounded store of saved item photos.

The database is in WAL mode so that readers (``smartbin events``, ``smartbin collect``) can
copy it while the daemon writes.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
    error TEXT,                  -- what went wrong, if anything
    box TEXT                     -- JSON [x, y, width, height]: what changed against the empty reference
)
"""
# Columns added since the first schema: (name, declaration) for ALTER TABLE on an older log.
ADDED_COLUMNS = (("box", "TEXT"),)


# A person's word on what an item really was (the review page, ``smartbin retrain``): one row per
# review, the newest per event wins. ``label`` is a class label, or ``not_trash`` / ``empty``.
REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events(id),
    label TEXT NOT NULL,         -- what the item really was
    old_label TEXT,              -- the label before this review: the model's, or the last review's
    who TEXT NOT NULL,           -- who said so (e.g. 'web 192.168.1.23')
    at TEXT NOT NULL             -- when, ISO 8601 UTC
);
CREATE INDEX IF NOT EXISTS reviews_by_event ON reviews(event_id);
"""
REVIEW_EXTRA_LABELS = ("not_trash", "empty")  # what a reviewer may say besides the model's labels


# What an item's ``error`` names: "; "-separated parts, each starting with one of these and ":"
# ("servo: stuck; image: disk full"). A message may itself hold "; ", so only a known kind starts a part.
ERROR_KINDS = ("camera", "capture", "classify", "servo", "image")


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
    box: tuple[int, int, int, int] | None = None  # (x, y, width, height) of the item, from the empty check
    id: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = [name for name in ItemEvent.__dataclass_fields__ if name != "id"]


class EventLog:
    """Appends item events; one connection, used by one thread at a time."""

    def __init__(self, path: Path, *, verify: bool = False) -> None:
        """Open (or create) the log. With ``verify``, SQLite's quick check runs first, and a
        damaged file is left byte for byte as it was (no schema change), with :attr:`problem` set."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self.problem = self.check() if verify else None
            if self.problem is None:
                self._db.execute(SCHEMA)
                _add_new_columns(self._db)
                self._db.executescript(REVIEW_SCHEMA)
                self._db.commit()
        except BaseException:
            self._db.close()
            raise

    def check(self) -> str | None:
        """The first problem SQLite's quick check finds (a damaged page), or None.

        It reads the whole file: about 20 ms for 100,000 events (26 MB, in the page cache) on a
        2-core x86 machine (docs/device.md, Measured).
        """
        problem = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
        return None if problem == "ok" else problem

    def wait_at_most(self, seconds: float) -> None:
        """How long a write waits for another program's lock before SQLite says "database is locked"."""
        self._db.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")

    def newest_ts(self) -> str | None:
        return self._db.execute("SELECT MAX(ts) FROM events").fetchone()[0]

    def record(self, event: ItemEvent) -> int:
        row = event.to_dict()
        row["scores"] = json.dumps(row["scores"])
        row["box"] = json.dumps(list(row["box"])) if row["box"] is not None else None
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        with self._db:
            cursor = self._db.execute(
                f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({placeholders})", row
            )
        event.id = cursor.lastrowid
        return event.id

    def close(self) -> None:
        self._db.close()


def _add_new_columns(db: sqlite3.Connection) -> None:
    """Bring an event log written by an older smartbin up to :data:`ADDED_COLUMNS`."""
    have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    for name, declaration in ADDED_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE events ADD COLUMN {name} {declaration}")


def add_review(db: sqlite3.Connection, event_id: int, label: str, who: str, at: str) -> dict[str, Any]:
    """Record that event ``event_id`` was really ``label``; returns the review. KeyError: no such event.

    One write transaction, taken before the old label is read: a review written meanwhile by
    another connection is either before it (and is its old label) or waits for it. The same
    label sent again (a double tap, a retried request) is the newest review, not a new one.
    """
    with db:
        db.execute("BEGIN IMMEDIATE")
        event = db.execute("SELECT label FROM events WHERE id = ?", (event_id,)).fetchone()
        if event is None:
            raise KeyError(event_id)
        newest = db.execute(
            "SELECT id, label, old_label, who, at FROM reviews WHERE event_id = ? ORDER BY id DESC LIMIT 1",
            (event_id,),
        ).fetchone()
        if newest is not None and newest[1] == label:
            keys = ("id", "label", "old_label", "who", "at")
            return {"event_id": event_id, **dict(zip(keys, newest, strict=True))}
        old_label = newest[1] if newest is not None else event[0]
        cursor = db.execute(
            "INSERT INTO reviews (event_id, label, old_label, who, at) VALUES (?, ?, ?, ?, ?)",
            (event_id, label, old_label, who, at),
        )
    return {
        "id": cursor.lastrowid,
        "event_id": event_id,
        "label": label,
        "old_label": old_label,
        "who": who,
        "at": at,
    }


def undo_review(
    db: sqlite3.Connection, event_id: int, review_id: int, not_before: str
) -> dict[str, Any] | None:
    """Take back review ``review_id`` of event ``event_id``: delete its row, so that the review before
    it (or the bin's own label) counts again, as if it had never been made; returns the newest review
    left, or None. One write transaction.

    Only the event's newest review, written at ``not_before`` or later, can be taken back: a
    later review, or an old one, stays (:class:`LookupError` saying why). KeyError: no such review.
    """
    with db:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute(
            "SELECT at FROM reviews WHERE id = ? AND event_id = ?", (review_id, event_id)
        ).fetchone()
        if row is None:
            raise KeyError(review_id)
        newest = db.execute("SELECT MAX(id) FROM reviews WHERE event_id = ?", (event_id,)).fetchone()[0]
        if newest != review_id:
            raise LookupError("a later review of this item counts now")
        if row[0] < not_before:
            raise LookupError("it is too old to undo")
        db.execute("DELETE FROM reviews WHERE id = ?", (review_id,))
        left = db.execute(
            "SELECT id, label, old_label, who, at FROM reviews WHERE event_id = ? ORDER BY id DESC LIMIT 1",
            (event_id,),
        ).fetchone()
    if left is None:
        return None
    return {"event_id": event_id, **dict(zip(("id", "label", "old_label", "who", "at"), left, strict=True))}


def reviewed_labels(db: sqlite3.Connection) -> dict[int, str]:
    """event id -> the newest reviewed label, for every reviewed event."""
    rows = db.execute(
        "SELECT event_id, label FROM reviews WHERE id IN (SELECT MAX(id) FROM reviews GROUP BY event_id)"
    ).fetchall()
    return dict(rows)


def read_events(path: Path, *, limit: int = 20) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``limit`` most recent events (oldest first) and totals, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        added = {name for name, _ in ADDED_COLUMNS}
        missing = [c for c in ("id", *_COLUMNS) if c not in have and c not in added]
        if have and missing:  # (no table at all: the SELECT says so)
            raise sqlite3.DatabaseError(
                f"its events table lacks {len(missing)} of smartbin's columns ({missing[0]}, ...): "
                "smartbin did not write it"
            )
        rows = db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        events = [dict(row) for row in reversed(rows)]
        for event in events:  # a log no daemon has opened since the box column came has none
            event["scores"] = json.loads(event["scores"])
            event["box"] = json.loads(event.get("box") or "null")
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
