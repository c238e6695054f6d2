"""`smartbin train` end to end on a tiny synthetic dataset (random weights, 32x32, a few epochs)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from smartbin.device.cli import main
from smartbin.training.images import load_rgb, resize_rgb
from smartbin.training.synthetic import make_shapes_dataset, make_tiny_run

REPORTS = (
    "model.keras",
    "run.json",
    "splits.csv",
    "dataset_report.json",
    "dataset_report.md",
    "metrics.json",
    "summary.md",
    "history.csv",
    "curves.png",
    "confusion_val.png",
    "confusion_test.png",
    "misclassified.csv",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny")
    data = make_shapes_dataset(tmp / "data")
    (data / "can" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return make_tiny_run(tmp, data_dirs=[data])


def test_run_dir_has_the_model_and_every_report(tiny_run: Path) -> None:
    for name in REPORTS:
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "logs").rglob("events.out.tfevents*")), "no TensorBoard logs"
    assert not list(tiny_run.parent.glob(".run.partial-*")), "staging folder left behind"


def test_run_json_follows_the_contract(tiny_run: Path) -> None:
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["labels"] == ["can", "glass", "plastic"]
    assert run["input_size"] == [32, 32]
    assert run["resize"] == "stretch"
    assert run["backbone"] == "tiny_cnn" and run["weights"] == "none" and run["seed"] == 1
    assert [Path(p).is_absolute() for p in run["data_dirs"]] == [True]
    assert {"val_accuracy", "test_accuracy"} <= set(run["metrics"])
    assert run["args"]["fine_tune_epochs"] == 2


def test_splits_csv_lists_usable_images_and_the_report_the_broken_one(tiny_run: Path) -> None:
    with open(tiny_run / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)
    report = json.loads((tiny_run / "dataset_report.json").read_text())
    assert [Path(s["path"]).name for s in report["skipped"]] == ["broken.jpg"]


def test_model_takes_raw_pixels_and_tells_the_classes_apart(tiny_run: Path) -> None:
    import keras

    model = keras.models.load_model(tiny_run / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)
    with open(tiny_run / "splits.csv", newline="") as f:
        test = [r for r in csv.DictReader(f) if r["split"] == "test"]
    pixels = np.stack([resize_rgb(load_rgb(r["path"]), (32, 32)) for r in test]).astype(np.float32)
    scores = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    labels = ["can", "glass", "plastic"]
    accuracy = np.mean([labels[i] == r["label"] for i, r in zip(scores.argmax(axis=1), test, strict=True)])
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-3)
    assert accuracy >= 0.8, metrics["test"]
    assert set(metrics["test"]["per_class"]["can"]) == {"precision", "recall", "f1", "support"}
    with open(tiny_run / "misclassified.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == metrics["test"]["misclassified"]


def test_the_report_says_where_the_test_photos_would_land(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    sorting = metrics["sorting"]
    assert set(sorting["thresholds"]) <= {"can", "glass", "plastic"}
    assert sorting["target"] == "at most 1% wrong, at least 98% of the rest kept out"
    outcome = sorting["test"]
    images = sum(row["images"] for row in outcome["by_class"].values())
    assert images == outcome["recyclables"]["images"] == metrics["test"]["count"]
    assert outcome["rest"]["images"] == 0
    for row in outcome["by_class"].values():
        assert row["own"] + row["wrong_recycling"] + row["rest"] + row["no_move"] == pytest.approx(
            1, abs=1e-3
        )
    assert "## Where the test photos land (default config" in (tiny_run / "summary.md").read_text()


def test_cli_refuses_to_overwrite_a_run_and_keeps_it(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (tiny_run / "model.keras").read_bytes()
    (data,) = json.loads((tiny_run / "run.json").read_text())["data_dirs"]
    assert main(["train", data, "--out", str(tiny_run), "--weights", "none"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tiny_run / "model.keras").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "resnet"], "unknown backbone 'resnet'"),
        (["--strategy", "tpu"], "unknown strategy 'tpu'"),
        (["--input-size", "8"], "--input-size 8 is out of range; use 32 to 1024"),
        (["--input-size", "99999999"], "--input-size 99999999 is out of range"),
        (["--mixup", "inf"], "--mixup inf is out of range"),
        (["--batch-size", "10000000"], "--batch-size 10000000 is out of range; use 1 to 4096"),
        (
            ["--backbone", "mobilenet_v2", "--weights", "/nope.weights.h5"],
            "weights file /nope.weights.h5 not found",
        ),
        (["--min-images", "100"], "usable images"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--input-size", "32", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("smartbin: error: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_same_seed_gives_the_same_model(tiny_run: Path, tmp_path: Path) -> None:
    import keras

    data = Path(json.loads((tiny_run / "run.json").read_text())["data_dirs"][0])
    again = make_tiny_run(tmp_path, data_dirs=[data])
    first = keras.models.load_model(tiny_run / "model.keras").get_weights()
    second = keras.models.load_model(again / "model.keras").get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mobilenet_v2_and_lite0_train_with_random_weights(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    for backbone in ("mobilenet_v2", "efficientnet_lite0"):
        out = tmp_path / backbone
        argv = [
            "train",
            str(data),
            "--out",
            str(out),
            "--backbone",
            backbone,
            "--weights",
            "none",
            "--alpha",
            "0.35",
        ]
        argv += [
            "--input-size",
            "32",
            "--head-epochs",
            "1",
            "--fine-tune-epochs",
            "1",
            "--unfreeze",
            "5",
            "--quiet",
        ]
        assert main(argv) == 0
        run = json.loads((out / "run.json").read_text())
        assert run["backbone"] == backbone and run["input_size"] == [32, 32]
        assert (out / "model.keras").is_file()


def test_label_smoothing_and_mixup_train_a_model_that_still_separates_the_classes(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path, label_smoothing=0.1, mixup=0.2, fine_tune_epochs=3)
    info = json.loads((run / "run.json").read_text())
    assert info["args"]["label_smoothing"] == 0.1 and info["args"]["mixup"] == 0.2
    phases = {row["phase"] for row in csv.DictReader((run / "history.csv").open())}
    assert phases == {"head", "fine_tune"}
    assert info["metrics"]["test_accuracy"] >= 0.8


@pytest.mark.parametrize(
    ("option", "value"), [("--label-smoothing", "1.0"), ("--label-smoothing", "-0.1"), ("--mixup", "-1")]
)
def test_cli_refuses_out_of_range_regularisers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), option, value]) == 1
    assert option in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_lite0_weights_that_do_not_fit_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    np.savez(tmp_path / "other.npz", **{"_conv_stem.weight": np.zeros((8, 3, 3, 3), np.float32)})
    argv = [
        "train",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--input-size",
        "32",
        "--weights",
        str(tmp_path / "other.npz"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "does not fit layer stem_conv of efficientnet_lite0" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".run.partial-*"))


def test_cli_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path / "none"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'none'}: no such folder" in err and "\n" not in err.strip()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_cli_out_that_is_a_file_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overwrite: list[str]
) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for out in (notes, notes / "run"):
        assert main(["train", str(data), "--out", str(out), *overwrite]) == 1
        err = capsys.readouterr().err.strip()
        assert f"{out}: not a directory" in err and "choose another --out" in err and "\n" not in err
    assert notes.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]


def test_registering_the_command_does_not_import_tensorflow() -> None:
    code = "import sys, smartbin.training.cli as c, argparse; c.register(argparse.ArgumentParser().add_subparsers()); print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    assert main(["train", str(data), "--out", str(precious), "--overwrite", "--weights", "none"]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_a_swallowed_ctrl_c_still_stops_the_run_and_keeps_the_old_one(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A KeyboardInterrupt raised inside a weakref callback is printed and dropped by Python; the
    CLI's handler has noted the signal all the same, so the finished run is not moved into place."""
    import signal

    from smartbin.device import interrupts
    from smartbin.training import train as train_module

    real_run = train_module._run

    def run_then_lose_a_ctrl_c(*args: object) -> None:
        real_run(*args)
        interrupts.note(signal.SIGINT)  # what the handler did before its KeyboardInterrupt was lost

    monkeypatch.setattr(train_module, "_run", run_then_lose_a_ctrl_c)
    before = (tiny_run / "model.keras").read_bytes()
    (data,) = json.loads((tiny_run / "run.json").read_text())["data_dirs"]
    argv = [
        "train",
        data,
        "--out",
        str(tiny_run),
        "--overwrite",
        "--backbone",
        "tiny_cnn",
        "--weights",
        "none",
    ]
    argv += ["--input-size", "32", "--head-epochs", "1", "--fine-tune-epochs", "0", "--quiet"]
    assert main(argv) == 130
    assert capsys.readouterr().err.endswith(
        f"interrupted; {tiny_run} left as it was (the unfinished run was removed)\n"
    )
    assert (tiny_run / "model.keras").read_bytes() == before
    assert not list(tiny_run.parent.glob(".run.partial-*"))
