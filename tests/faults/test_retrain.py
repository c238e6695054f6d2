"""Faults around ``smartbin retrain``: bad arguments, a bin that cannot be reached, and bins whose
photos cannot show that a new model is better. Each ends in one line, before TensorFlow starts,
with nothing trained and nothing deployed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from smartbin.device.records.events import EventLog, ItemEvent, add_review
from smartbin.training.dataset import split_of
from smartbin.training.synthetic import make_shapes_dataset

from ..deploy.conftest import build_fleet, ssh_tools, sshd  # noqa: F401 (the session's sshd fixtures)
from .conftest import assert_one_line_error, run_smartbin

TS = "2026-11-22T10:00:00+00:00"


@pytest.fixture(name="fleet")
def one_bin(sshd, tmp_path):  # noqa: F811 (the fixture imported above)
    return build_fleet(sshd, tmp_path, 1)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("base") / "base", per_class=12)


def names(split: str, n: int) -> list[str]:
    """``n`` bin-style photo names that the stable hash puts in ``split``."""
    found = (f"smartbin-20261122T100000{i:06d}Z-can.jpg" for i in range(10_000))
    chosen = [name for name in found if split_of(name, 15.0, 15.0) == split]
    return chosen[:n]


def fill_bin(bin_dir: Path, photos: dict[str, str | None]) -> None:
    """One saved photo per name, reviewed as the given label (None: not reviewed)."""
    images = bin_dir / "images"
    images.mkdir()
    log = EventLog(bin_dir / "events.db")
    db = sqlite3.connect(log.path)
    try:
        for name, label in photos.items():
            Image.new("RGB", (48, 48), (200, 40, 40)).save(images / name)
            event_id = log.record(
                ItemEvent(
                    TS, "can", 0.9, {}, "can", "sorted", "v", 1, 1.0, 1.0, 2.0, image_path=str(images / name)
                )
            )
            if label is not None:
                add_review(db, event_id, label, "test", TS)
    finally:
        db.close()
        log.close()


def retrain(fleet, base: Path, work: Path, *extra: str):
    return run_smartbin(
        "retrain", "bin1", "--base", base, "--work", work, "--backbone", "tiny_cnn", "--weights", "none",
        "--ssh-config", fleet.ssh_config, "--remote-smartbin", fleet.smartbin, "--reload-command", "", *extra,
    )  # fmt: skip


def test_bad_arguments_are_refused_before_any_bin_is_reached(tmp_path, base):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["--base", tmp_path / "nowhere", "--work", tmp_path / "w"], ["--base", "no such folder"]),
        (["--base", base, "--work", a_file], ["--work", "not a directory"]),
        (["--base", base, "--work", tmp_path / "w", "--backbone", "resnet"], ["unknown backbone 'resnet'"]),
        (["--base", base, "--work", tmp_path / "w", "--classes", "can,,glass"], ["--classes"]),
        # NaN would pass the comparison with the live model, letting a worse model through
        (
            ["--base", base, "--work", tmp_path / "w", "--max-base-drop", "nan"],
            ["--max-base-drop", "0 to 100"],
        ),
        (["--base", base, "--work", tmp_path / "w", "--max-drop", "-1"], ["--max-drop", "0 to 100"]),
        (["--base", base, "--work", tmp_path / "w", "--input-size", "5"], ["--input-size 5 is out of range"]),
        (["--base", base, "--base", base, "--work", tmp_path / "w"], ["is given twice"]),
        (["--base", next(base.iterdir()), "--work", tmp_path / "w"], ["looks like a class folder"]),
        (
            ["--base", base, "--work", tmp_path / "w", "--val-percent", "90", "--test-percent", "20"],
            ["add up to less than 100"],
        ),
    ]
    for args, fragments in cases:
        result = run_smartbin("retrain", "bin.invalid", *args, timeout=60)
        assert_one_line_error(result, *fragments)
    assert not (tmp_path / "w").exists()


def test_a_bin_that_cannot_be_reached_stops_the_loop(fleet, base, tmp_path):
    fleet.write_ssh_config(fleet.ssh_config, {"bin1": fleet.bins[0].config}, port=1)  # nothing listens
    result = retrain(fleet, base, tmp_path / "work")
    assert_one_line_error(result, "bin1: ", "retrain needs every bin it names")
    assert not (tmp_path / "work" / "run").exists()


def test_unreviewed_photos_are_no_training_data(fleet, base, tmp_path):
    fill_bin(fleet.bins[0].dir, dict.fromkeys(names("test", 3)))
    result = retrain(fleet, base, tmp_path / "work")
    assert_one_line_error(result, "no reviewed photos on bin1", "review some items")
    assert "reviewed: 0 of 3" in result.stdout
    assert len(list((tmp_path / "work" / "bins" / "bin1" / ".unreviewed" / "can").iterdir())) == 3
    assert not (tmp_path / "work" / "run").exists()


def test_reviews_that_are_all_in_the_training_split_cannot_show_anything(fleet, base, tmp_path):
    fill_bin(fleet.bins[0].dir, dict.fromkeys(names("train", 4), "can"))
    result = retrain(fleet, base, tmp_path / "work")
    assert_one_line_error(result, "none of the 4 reviewed photos is held out", "review more items")
    assert not (tmp_path / "work" / "run").exists()


def test_a_reviewed_class_the_base_sets_lack_is_named(fleet, base, tmp_path):
    fill_bin(fleet.bins[0].dir, dict.fromkeys(names("test", 2), "paper"))
    result = retrain(fleet, base, tmp_path / "work")
    assert_one_line_error(result, "'paper'", "--classes (can,glass,plastic) does not list")
    assert not (tmp_path / "work" / "run").exists()
