"""``smartbin retrain`` end to end: a bin on the real sshd with reviewed photos, a tiny model trained
on a generated base set plus those photos, the int8 parity gate, the comparison with the bin's
live bundle, and the deploy -- or the refusal when the new model is worse."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from PIL import Image

from smartbin.device.cli import main
from smartbin.device.records.events import EventLog, ItemEvent, add_review
from smartbin.device.vision.bundle import load_bundle
from smartbin.training.synthetic import make_shapes_dataset

from .conftest import FIXTURE_MODELS

TS = "2026-11-22T10:00:00+00:00"
TINY = ["--backbone", "tiny_cnn", "--weights", "none", "--input-size", "32", "--batch-size", "16"]


def fill_bin(bin_dir: Path, source: Path) -> dict[str, int]:
    """The bin saved a photo of each generated item (all predicted 'can') and a person reviewed them,
    except one left unreviewed and one reviewed as 'empty'. Returns reviewed photos per label."""
    images = bin_dir / "images"
    images.mkdir()
    log = EventLog(bin_dir / "events.db")
    db = sqlite3.connect(log.path)
    reviewed: dict[str, int] = {}
    try:
        photos = sorted(source.rglob("*.png"))
        for i, photo in enumerate(photos):
            path = images / f"smartbin-20261122T100000{i:06d}Z-can.jpg"
            Image.open(photo).save(path, quality=95)
            event_id = log.record(
                ItemEvent(TS, "can", 0.5, {}, "can", "sorted", "live", 1, 1.0, 1.0, 2.0, image_path=str(path))
            )
            truth = "empty" if i == 1 else photo.parent.name
            if i != 0:
                add_review(db, event_id, truth, "test", TS)
                reviewed[truth] = reviewed.get(truth, 0) + 1
    finally:
        db.close()
        log.close()
    return reviewed


def other_world(root: Path) -> Path:
    """The same photos with the classes turned round: cans are green here, glass blue, plastic red."""
    for label in ("can", "glass", "plastic"):
        (root / label).rename(root / f"was-{label}")
    for was, now in (("can", "plastic"), ("glass", "can"), ("plastic", "glass")):
        (root / f"was-{was}").rename(root / now)
    return root


def put_live(fleet, bundle: Path) -> None:
    assert main(["deploy", str(bundle), "bin1", *fleet.ssh_args(), "--reload-command", ""]) == 0


def retrain(fleet, tmp_path: Path, base: Path, *extra: str) -> int:
    argv = ["retrain", "bin1", "--base", str(base), "--work", str(tmp_path / "work"), *TINY, *extra]
    return main([*argv, *fleet.ssh_args(), "--reload-command", fleet.reload_command()])


def test_retrain_deploys_a_better_model_and_reports_the_changed_verdicts(fleet, capsys, tmp_path):
    b = fleet.bins[0]
    base = other_world(make_shapes_dataset(tmp_path / "base", per_class=20, seed=0))
    reviewed = fill_bin(b.dir, other_world(make_shapes_dataset(tmp_path / "seen", per_class=14, seed=7)))
    put_live(fleet, FIXTURE_MODELS / "colour3-int8")  # red is a can: wrong about every one of these
    capsys.readouterr()

    assert retrain(fleet, tmp_path, base, "--head-epochs", "30", "--head-lr", "0.01", "--dry-run") == 0
    out = capsys.readouterr().out
    assert b.current == "colour3-int8-1"  # a dry run deploys nothing
    collect = next(line for line in out.splitlines() if line.startswith("collect: bin1: "))
    assert f"reviewed: {sum(reviewed.values())} of 42" in collect and "live model colour3-int8-1" in collect
    assert "bin1: would deploy: upload" in out

    work = tmp_path / "work"
    with open(work / "run" / "splits.csv", newline="") as f:
        trained = [row["path"] for row in csv.DictReader(f)]
    assert sum("/work/bins/bin1/" in path for path in trained) == sum(reviewed.values()) - reviewed["empty"]
    assert not any(".unreviewed" in path or ".not-a-class" in path for path in trained)

    assert retrain(fleet, tmp_path, base, "--head-epochs", "30", "--head-lr", "0.01") == 0
    out = capsys.readouterr().out
    new = load_bundle(work / "bundle")
    assert b.current == new.version and new.quantization == "int8"
    assert f"bin1: deployed: {new.version} is live" in out
    evaluate = next(line for line in out.splitlines() if line.startswith("evaluate: "))
    assert evaluate.startswith(f"evaluate: colour3-int8-1 -> {new.version}: held-out ")

    report = (work / "report.md").read_text()
    assert f"| bin1 | {sum(reviewed.values())} | `colour3-int8-1` | deploy |" in report
    assert "on the bins' held-out reviewed photos" in report and "on the base sets' test split" in report
    changed = [line for line in report.splitlines() if line.startswith("| held-out/bin1--smartbin-")]
    assert changed, report  # the live model was wrong on all of them
    assert all(line.split(" | ")[2] != line.split(" | ")[3] for line in changed)


def test_retrain_refuses_a_worse_model_and_changes_nothing(fleet, capsys, tmp_path):
    b = fleet.bins[0]
    base = make_shapes_dataset(tmp_path / "base", per_class=20, seed=0)
    fill_bin(b.dir, make_shapes_dataset(tmp_path / "seen", per_class=14, seed=7))
    put_live(fleet, FIXTURE_MODELS / "colour3-int8")  # right on every one of these colours
    capsys.readouterr()

    # One epoch at a tiny learning rate: the new model has learnt next to nothing.
    weak = ["--head-epochs", "1", "--head-lr", "1e-6", "--max-drop", "100"]
    assert retrain(fleet, tmp_path, base, *weak) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("smartbin: error:")]
    assert len(errors) == 1, captured.err
    assert errors[0].startswith(
        "smartbin: error: not deployed: the new model is worse than colour3-int8-1 on the bins' "
    )
    assert "held-out reviewed photos" in errors[0] and str(tmp_path / "work" / "report.md") in errors[0]
    assert "bin1: deployed:" not in captured.out and "would deploy" not in captured.out
    assert b.current == "colour3-int8-1"
    assert "not deployed: the new model is worse" in (tmp_path / "work" / "report.md").read_text()


def test_a_nan_allowance_lets_no_worse_model_through():
    from smartbin.deploy.retrain import BASE_TEST, HELD_OUT, Verdicts, decide

    def verdicts(base_accuracy: float) -> Verdicts:
        return Verdicts(
            {
                "by_source": {
                    HELD_OUT: {"accuracy": 0.9, "images": 10},
                    BASE_TEST: {"accuracy": base_accuracy, "images": 100},
                }
            }
        )

    assert decide(verdicts(0.95), verdicts(0.95), "live-1", 0.0, True) is None  # as good: deploy
    assert "worse than live-1" in decide(verdicts(0.10), verdicts(0.95), "live-1", float("nan"), True)
