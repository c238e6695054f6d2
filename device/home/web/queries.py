"""The web's reads of the event log and its review writes, each on a connection of its own.

The daemon writes the log in WAL mode, so these reads never wait for it nor it for them; a
review is one short write transaction (:func:`~smartbin.device.records.events.add_review`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILTERS = ("uncertain", "wrong", "unreviewed")
MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: no event has a larger id, and SQLite cannot compare one
COUNT_WINDOW = 1000  # the filters' counts look at this many newest events, no more
BUSY_TIMEOUT_S = 2.0  # a review waits at most this long for the daemon's write of an item

# The newest review of each event (reviews are few next to events).
_LAST_REVIEW = """
    SELECT r.event_id, r.label, r.old_label, r.who, r.at FROM reviews r
    WHERE r.id IN (SELECT MAX(id) FROM reviews GROUP BY event_id)
"""
_EVENT_COLUMNS = (
    "e.id, e.ts, e.label, e.confidence, e.scores, e.compartment, e.reason, e.model_version, e.frames, "
    "e.capture_ms, e.inference_ms, e.latency_ms, e.cycle_ms, e.image_path, e.error, e.box"
)
_WHERE = {
    "uncertain": "e.reason = 'low_confidence'",  # below its label's threshold (device/thresholds.py)
    # what the bin said: its label, or "empty" for a closing the empty check found empty
    "wrong": "r.label IS NOT NULL AND r.label IS NOT COALESCE(e.label, CASE e.reason WHEN 'empty' THEN 'empty' END)",
    "unreviewed": "r.event_id IS NULL",
}


def connect(path: Path, *, write: bool = False) -> sqlite3.Connection:
    """A connection to the event log; read-only unless ``write``. FileNotFoundError: no log yet."""
    if not path.is_file():
        raise FileNotFoundError(path)
    mode = "rw" if write else "ro"
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    return db


def list_events(
    db: sqlite3.Connection, *, limit: int, before: int | None, filter: str | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` events, newest first, with ids below ``before``, that pass ``filter``."""
    where = ["e.id < :before"] if before is not None else []
    if filter is not None:
        where.append(_WHERE[filter])
    rows = db.execute(
        f"SELECT {_EVENT_COLUMNS}, r.label AS review_label, r.old_label AS review_old_label,"
        f" r.who AS review_who, r.at AS review_at"
        f" FROM events e LEFT JOIN ({_LAST_REVIEW}) r ON r.event_id = e.id"
        f" {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY e.id DESC LIMIT :limit",
        {"before": before, "limit": limit},
    ).fetchall()
    return [_event(row) for row in rows]


def count_events(db: sqlite3.Connection, *, window: int = COUNT_WINDOW) -> dict[str, Any]:
    """How many of the newest ``window`` events pass each filter (``all``: every one of them), and
    whether older events were left out (``capped``): a few hundred rows read at most, never the log."""
    sums = ", ".join(f"COALESCE(SUM({_WHERE[name]}), 0)" for name in FILTERS)
    row = db.execute(
        f"SELECT COUNT(*), MIN(e.id), {sums}"
        " FROM (SELECT id, label, reason FROM events ORDER BY id DESC LIMIT :window) e"
        f" LEFT JOIN ({_LAST_REVIEW}) r ON r.event_id = e.id",
        {"window": window},
    ).fetchone()
    capped = (
        row[0] == window and db.execute("SELECT 1 FROM events WHERE id < ?", (row[1],)).fetchone() is not None
    )
    return {"all": row[0], **dict(zip(FILTERS, row[2:], strict=True)), "capped": capped}


def _event(row: sqlite3.Row) -> dict[str, Any]:
    event = {key: value for key, value in dict(row).items() if not key.startswith("review_")}
    event["scores"] = json.loads(event["scores"] or "{}")
    event["box"] = json.loads(event["box"] or "null")
    event["photo"] = event.pop("image_path") is not None
    event["review"] = (
        {key: row[f"review_{key}"] for key in ("label", "old_label", "who", "at")}
        if row["review_label"] is not None
        else None
    )
    return event


def image_path(db: sqlite3.Connection, event_id: int) -> str | None:
    """The saved photo's path of an event; KeyError: no such event."""
    row = db.execute("SELECT image_path FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise KeyError(event_id)
    return row[0]


def last_event_id(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]


def counts_by_compartment(
    db: sqlite3.Connection, *, up_to: int, since: datetime | None = None
) -> dict[str, int]:
    """Items per compartment (``none``: no move) up to event ``up_to``, all or those from ``since`` on."""
    where, args = "id <= ?", [up_to]
    if since is not None:
        where += " AND ts >= ?"
        args.append(since.astimezone(UTC).isoformat(timespec="milliseconds"))
    rows = db.execute(
        f"SELECT COALESCE(compartment, 'none'), COUNT(*) FROM events WHERE {where} GROUP BY 1", args
    ).fetchall()
    return {name: count for name, count in rows}
