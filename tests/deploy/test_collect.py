"""``smartbin collect`` against a real sshd: photos by predicted label and the event log, incrementally."""

from __future__ import annotations

import sqlite3

from smartbin.device.cli import main
from smartbin.device.events import EventLog, ItemEvent


def record(log: EventLog, images, name: str, label: str | None, photo: bool = True) -> None:
    path = None
    if photo:
        path = images / f"{name}.jpg"
        path.write_bytes(f"jpeg of {name}".encode())
    log.record(
        ItemEvent(
            ts="2026-11-22T10:00:00+00:00",
            label=label,
            confidence=0.9 if label else None,
            scores={},
            compartment=label,
            reason="sorted" if label else "no_frame",
            model_version="colour3-int8-1",
            frames=1,
            capture_ms=1.0,
            inference_ms=1.0,
            latency_ms=2.0,
            image_path=str(path) if path else None,
        )
    )


def test_collect_is_incremental(fleet, capsys, tmp_path):
    b = fleet.bins[0]
    out = tmp_path / "collected"
    args = ["collect", "bin1", "--out", str(out), *fleet.ssh_args()]

    assert main(args) == 0
    assert "no event log yet" in capsys.readouterr().out

    images = b.dir / "images"
    images.mkdir()
    log = EventLog(b.dir / "events.db")  # the daemon keeps it open (WAL) while collect copies it
    try:
        record(log, images, "0001", "can")
        record(log, images, "0002", "glass")
        record(log, images, "0003", "can")
        record(log, images, "0004", None)
        record(log, images, "0005", "plastic", photo=False)
        record(log, images, "0006", "plastic")
        (images / "0006.jpg").unlink()  # pruned by the bin's image store meanwhile

        assert main(args) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(
            "bin1: 4 new photos (_unlabelled 1, can 2, glass 1), 0 already here; 1 gone from the bin"
        )
        assert "event log: 6 events" in line
        assert (out / "can" / "0001.jpg").read_bytes() == b"jpeg of 0001"
        assert sorted(p.name for p in (out / "can").iterdir()) == ["0001.jpg", "0003.jpg"]
        assert (out / "glass" / "0002.jpg").exists() and (out / "_unlabelled" / "0004.jpg").exists()
        db = sqlite3.connect(out / "events.db")
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6
        db.close()

        assert main(args) == 0
        assert capsys.readouterr().out.startswith("bin1: 0 new photos, 4 already here; 1 gone from the bin")

        record(log, images, "0007", "glass")
        assert main(args) == 0
        assert capsys.readouterr().out.startswith("bin1: 1 new photos (glass 1), 4 already here")
    finally:
        log.close()
    assert not list(out.rglob(".collect-files")) and not (out / ".events.db.part").exists()
