"""``smartbin collect`` against a real sshd: photos by reviewed label, the event log, incrementally."""

from __future__ import annotations

import sqlite3

from smartbin.device.cli import main
from smartbin.device.records.events import EventLog, ItemEvent, add_review


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


def review(log: EventLog, event_id: int, label: str) -> None:
    db = sqlite3.connect(log.path)  # as the review page writes it, while the daemon has the log open
    try:
        add_review(db, event_id, label, "test", "2026-11-22T11:00:00+00:00")
    finally:
        db.close()


def test_collect_sorts_by_review_and_is_incremental(fleet, capsys, tmp_path):
    b = fleet.bins[0]
    out = tmp_path / "collected"
    args = ["collect", "bin1", "--out", str(out), *fleet.ssh_args()]

    assert main(args) == 0
    assert "bin1: nothing to collect: no event log yet" in capsys.readouterr().out

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
        review(log, 1, "can")  # confirmed
        review(log, 2, "can")
        review(log, 2, "plastic")  # changed its mind: the newest review wins
        review(log, 4, "empty")

        assert main(args) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(
            "bin1: collected: 4 new photos (.not-a-class/empty 1, .unreviewed/can 1, can 1, plastic 1), "
            "0 already here; 1 gone from the bin; reviewed: 3 of 5 (can 1, empty 1, plastic 1)"
        ), line
        assert "event log: 6 events" in line
        assert (out / "can" / "0001.jpg").read_bytes() == b"jpeg of 0001"
        assert [p.name for p in (out / "plastic").iterdir()] == ["0002.jpg"]
        assert (out / ".unreviewed" / "can" / "0003.jpg").exists()
        assert (out / ".not-a-class" / "empty" / "0004.jpg").exists()
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
            "can",
            "events.db",
            "plastic",
        ]
        db = sqlite3.connect(out / "events.db")
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6
        db.close()

        assert main(args) == 0
        assert capsys.readouterr().out.startswith("bin1: collected: 0 new photos, 4 already here; 1 gone")

        record(log, images, "0007", "glass")
        review(log, 3, "glass")  # reviewed after it was collected: it moves, nothing travels
        assert main(args) == 0
        line = capsys.readouterr().out
        assert line.startswith(
            "bin1: collected: 1 new photos (.unreviewed/glass 1), 3 already here; 1 moved to their reviewed folder"
        ), line
        assert (out / "glass" / "0003.jpg").read_bytes() == b"jpeg of 0003"
        assert not (out / ".unreviewed" / "can").exists()  # emptied by the move
    finally:
        log.close()
    assert not list(out.rglob(".collect-files")) and not (out / ".events.db.part").exists()


def test_collect_upgrades_an_old_layout_and_takes_a_log_without_reviews(fleet, capsys, tmp_path):
    """Photos collected before reviews existed (OUT/<predicted>/, OUT/_unlabelled/) move aside, not
    copied again; a bin whose event log has no reviews table gives no reviewed photos."""
    b = fleet.bins[0]
    images = b.dir / "images"
    images.mkdir()
    log = EventLog(b.dir / "events.db")
    try:
        record(log, images, "0001", "can")
        record(log, images, "0002", None)
    finally:
        log.close()
    db = sqlite3.connect(b.dir / "events.db")
    db.execute("DROP TABLE reviews")
    db.close()
    out = tmp_path / "collected"
    for folder, name in (("can", "0001.jpg"), ("_unlabelled", "0002.jpg")):
        (out / folder).mkdir(parents=True)
        (out / folder / name).write_bytes(b"collected before")

    assert main(["collect", "bin1", "--out", str(out), *fleet.ssh_args()]) == 0
    line = capsys.readouterr().out
    assert "0 new photos, 0 already here; 2 moved to their reviewed folder; reviewed: 0 of 2;" in line
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == [
        ".unreviewed/_unlabelled/0002.jpg",
        ".unreviewed/can/0001.jpg",
    ]
    assert not (out / "can").exists() and not (out / "_unlabelled").exists()


def test_collect_from_several_bins_gives_each_its_own_set(make_fleet, capsys, tmp_path):
    fleet = make_fleet(2)
    for i, b in enumerate(fleet.bins):
        images = b.dir / "images"
        images.mkdir()
        log = EventLog(b.dir / "events.db")
        try:
            record(log, images, f"000{i}", "glass")
            review(log, 1, "glass")
        finally:
            log.close()
    out = tmp_path / "collected"
    assert main(["collect", "bin1", "bin2", "--out", str(out), *fleet.ssh_args()]) == 0
    lines = sorted(capsys.readouterr().out.splitlines())
    assert [line.split(":")[0] for line in lines] == ["bin1", "bin2"]
    assert (out / "bin1" / "glass" / "0000.jpg").exists() and (out / "bin2" / "glass" / "0001.jpg").exists()
    assert (out / "bin2" / "events.db").is_file()
