"""The event log and the bounded image store."""

from __future__ import annotations

import os

import numpy as np

from smartbin.device.events import EventLog, ImageStore, ItemEvent, read_events


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


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_images_are_bounded_by_count_oldest_first(tmp_path):
    store = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    paths = [store.save(noise(i), f"item-{i}") for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["item-2.jpg", "item-3.jpg", "item-4.jpg"]
    assert not paths[0].exists() and paths[4].exists()


def test_images_are_bounded_by_size(tmp_path):
    one = ImageStore(tmp_path / "probe", max_count=10, max_mb=100)
    size = one.save(noise(0), "x").stat().st_size
    store = ImageStore(tmp_path / "img", max_count=100, max_mb=2.5 * size / 1e6)
    for i in range(6):
        store.save(noise(i), f"item-{i}")
    assert store.count == 2
    assert store.total_bytes <= 2.5 * size * 1.1
    assert sum(os.path.getsize(p) for p in (tmp_path / "img").iterdir()) == store.total_bytes


def test_an_existing_folder_counts_towards_the_limit(tmp_path):
    first = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    for i in range(3):
        first.save(noise(i), f"a-{i}")
    again = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    again.save(noise(9), "b-0")
    assert again.count == 3 and len(list((tmp_path / "img").iterdir())) == 3
