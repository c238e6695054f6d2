"""Moving a corrupt event log aside: nothing is ever overwritten or removed."""

from __future__ import annotations

from smartbin.device.records.recorder import EventRecords, move_aside

from .test_events import event


def test_moving_aside_twice_keeps_both_with_their_side_files(tmp_path):
    db = tmp_path / "events.db"
    moved = []
    for n in range(3):
        db.write_bytes(f"damaged {n}".encode())
        (tmp_path / "events.db-wal").write_bytes(f"wal {n}".encode())
        moved.append(move_aside(db))
    assert len(set(moved)) == 3 and not db.exists()
    for n, path in enumerate(moved):
        assert path.read_bytes() == f"damaged {n}".encode()
        assert (tmp_path / f"{path.name}-wal").read_bytes() == f"wal {n}".encode()


def test_a_log_that_cannot_be_replaced_stops_recording_not_sorting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    records = EventRecords(blocker / "events.db")
    records.open()
    assert records.status()["recording"] is False
    assert records.record(event("can", "can")) is False  # not recorded, and it never raises
    assert records.status()["not_recorded"] == 1
    assert records.warnings() == [
        f"not recording items: cannot open the event log {blocker}/events.db: not a directory"
    ]


def test_a_value_sqlite_cannot_take_loses_that_item_only(tmp_path):
    records = EventRecords(tmp_path / "events.db")
    records.open()
    odd = event("can", "can")
    odd.source = "caf\udce9.jpg"  # a surrogate escape: not UTF-8
    assert records.record(odd) is False  # it never raises
    assert records.record(event("glass", "glass")) is True
    assert records.status()["recording"] is True and records.status()["not_recorded"] == 1
