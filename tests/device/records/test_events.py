"""The event log and the bounded image store."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from smartbin.device.records.events import (
    EventLog,
    ItemEvent,
    add_review,
    read_events,
    reviewed_labels,
)


def event(
    label: str | None, compartment: str | None, reason: str = "sorted", error: str | None = None
) -> ItemEvent:
    return ItemEvent(
        ts="2026-11-22T10:00:00.000+00:00",
        label=label,
        confidence=0.9 if label else None,
        scores={label: 0.9} if label else {},
        compartment=compartment,
        reason=reason,
        model_version="m-1",
        frames=3 if label else 0,
        capture_ms=1.0,
        inference_ms=0.5,
        latency_ms=1.6,
        cycle_ms=900.0,
        error=error,
    )


def test_events_round_trip_with_totals(tmp_path):
    log = EventLog(tmp_path / "db" / "events.db")
    log.record(event("can", "can"))
    log.record(event("empty", None, "unmapped"))
    log.record(event(None, "other", "no_frame", error="camera: 0 of 3 frames"))
    log.close()
    events, totals = read_events(tmp_path / "db" / "events.db", limit=2)
    assert [e["id"] for e in events] == [2, 3]
    assert events[0]["scores"] == {"empty": 0.9}
    assert totals["items"] == 3 and totals["errors"] == 1
    assert totals["by_compartment"] == {"can": 1, "none": 1, "other": 1}
    assert totals["by_reason"] == {"no_frame": 1, "sorted": 1, "unmapped": 1}


def test_a_reader_sees_rows_while_the_writer_keeps_its_connection(tmp_path):
    log = EventLog(tmp_path / "events.db")
    log.record(event("can", "can"))
    assert read_events(tmp_path / "events.db")[1]["items"] == 1
    log.record(event("glass", "glass"))
    assert read_events(tmp_path / "events.db")[1]["items"] == 2
    log.close()


def test_reviews_keep_the_old_label_and_the_newest_wins(tmp_path):
    path = tmp_path / "events.db"
    log = EventLog(path)
    first, second = log.record(event("can", "can")), log.record(event("glass", "glass"))
    log.close()
    db = sqlite3.connect(path)
    a = add_review(db, first, "plastic", "web", "2026-12-01T10:00:00.000+00:00")
    b = add_review(db, first, "not_trash", "cli", "2026-12-01T10:01:00.000+00:00")
    add_review(db, second, "glass", "web", "2026-12-01T10:02:00.000+00:00")
    assert (a["old_label"], b["old_label"]) == ("can", "plastic")
    assert reviewed_labels(db) == {first: "not_trash", second: "glass"}
    with pytest.raises(KeyError):
        add_review(db, 99, "can", "web", "2026-12-01T10:03:00.000+00:00")
    assert db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 3
    db.close()


def test_a_review_reads_the_old_label_inside_its_own_write(tmp_path):
    """Two people relabel one item at once: the second review's old label is the first's."""
    path = tmp_path / "events.db"
    log = EventLog(path)
    item = log.record(event("can", "can"))
    log.close()
    first = sqlite3.connect(path)
    first.execute("BEGIN IMMEDIATE")  # the first review holds the write lock, not committed yet
    first.execute(
        "INSERT INTO reviews (event_id, label, old_label, who, at) VALUES (?, 'glass', 'can', 'a', 't')",
        (item,),
    )
    second = sqlite3.connect(path, timeout=30, check_same_thread=False)
    began = threading.Event()
    second.set_trace_callback(lambda sql: began.set() if sql.lstrip().upper().startswith("BEGIN") else None)
    result: list[dict] = []
    thread = threading.Thread(target=lambda: result.append(add_review(second, item, "plastic", "b", "t")))
    thread.start()
    assert began.wait(10)  # the second review has started its write: what it read before that is read
    first.commit()
    thread.join(10)
    assert result[0]["old_label"] == "glass"
    first.close()
    second.close()
