"""smartbin convert: every quantisation gives a bundle the device runs; the parity gate stops broken ones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from smartbin.converters import QUANTIZATIONS, tflite
from smartbin.converters.bundle_writer import write_bundle
from smartbin.converters.convert import convert_run
from smartbin.converters.frames import load_frames
from smartbin.converters.parity import (
    ParityGateError,
    accuracy_by_source,
    bundle_scores,
    compare,
    keras_scores,
)
from smartbin.converters.run_dir import load_keras_model, load_run
from smartbin.device.cli import main
from smartbin.device.vision.bundle import InputSpec, file_sha256, load_bundle
from smartbin.device.vision.classifier import Classifier
from smartbin.training.images import load_rgb


def smartbin(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def bundles(tiny_run, tmp_path_factory) -> dict:
    """One bundle per quantisation mode, converted through the CLI (stdout kept for the assertions)."""
    root = tmp_path_factory.mktemp("bundles")
    made = {}
    for quantization in QUANTIZATIONS:
        out = root / quantization
        code = main(["convert", str(tiny_run), "--quantize", quantization, "--out", str(out)])
        made[quantization] = (code, out)
    return made


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_every_mode_gives_a_bundle_the_device_runs_correctly(bundles, tiny_run, quantization):
    code, out = bundles[quantization]
    assert code == 0
    bundle = load_bundle(out)
    assert bundle.quantization == quantization
    assert bundle.labels == ("can", "glass", "plastic")
    expected_dtype = "uint8" if quantization == "int8" else "float32"
    assert (bundle.input.dtype, bundle.input.height, bundle.input.width) == (expected_dtype, 32, 32)
    assert (bundle.input.scale, bundle.input.offset) == (1.0, 0.0)
    classifier = Classifier(bundle)
    assert str(classifier.input_dtype) == expected_dtype
    run = load_run(tiny_run)
    for split in ("train", "test"):
        for example in run.splits[split]:
            assert classifier.classify(load_rgb(example.path)).label == example.label, example.path


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_manifest_records_parity_and_provenance(bundles, tiny_run, tiny_data, quantization):
    manifest = load_bundle(bundles[quantization][1]).manifest
    metrics = manifest["metrics"]
    assert metrics["quantization"] == quantization
    assert metrics["split"] == "test" and metrics["images"] == 15
    assert metrics["keras_accuracy"] == metrics["tflite_accuracy"] == 1.0
    assert metrics["agreement"] == 1.0
    assert 0.0 <= metrics["max_score_diff"] < 0.1
    assert metrics["max_drop_points"] == 1.0
    assert metrics["training_metrics"] == {"test_accuracy": 1.0}
    training = manifest["training"]
    assert training["backbone"] == "tiny-cnn"
    assert training["seed"] == 0 and training["args"] == {"epochs": 60}
    assert training["data"] == [{"name": tiny_data[0].name}]  # a run from before the data fingerprints
    assert "run_dir" not in training and str(tiny_run.parent) not in json.dumps(manifest)
    assert training["split_sizes"] == {"train": 36, "val": 9, "test": 15}
    assert manifest["version"].startswith(f"tiny-cnn-{quantization}-")


def test_the_thresholds_are_chosen_on_validation_and_kept_in_the_manifest(bundles, tiny_run):
    sorting = load_bundle(bundles["int8"][1]).manifest["sorting"]
    assert sorting["chosen_on"] == {
        "split": "val",
        "images": 9,
        "max_wrong": 0.01,
        "min_kept_out": 0.98,
        "purity": None,
    }
    assert set(sorting["thresholds"]) == {"can", "glass", "plastic"}
    assert all(0 <= t <= 1 for t in sorting["thresholds"].values())
    # the tiny model gets every validation photo right: all of them into their own compartment
    figures = sorting["figures"]
    assert figures["recyclables"] == {
        "images": 9,
        "own": 1.0,
        "wrong_recycling": 0.0,
        "rest": 0.0,
        "no_move": 0.0,
    }


def test_a_target_that_is_not_a_share_is_refused_before_converting(tiny_run, tmp_path, capsys):
    for option, value, message in (
        ("--purity", "40", "--purity must be 50 to 100 (percent)"),
        ("--purity", "nan", "--purity must be 50 to 100 (percent)"),
        ("--max-wrong", "60", "--max-wrong must be 0 to 50 (percent)"),
        ("--min-kept-out", "101", "--min-kept-out must be 50 to 100 (percent)"),
    ):
        code, _, err = smartbin(capsys, "convert", tiny_run, "--out", tmp_path / "b", option, value)
        assert code == 1 and message in err and not (tmp_path / "b").exists()


def test_int8_model_takes_raw_uint8_pixels(bundles):
    classifier = Classifier(load_bundle(bundles["int8"][1]))
    details = classifier._interpreter.get_input_details()[0]
    scale, zero_point = details["quantization"]
    # Preprocessing is inside the model: the uint8 input tensor holds the pixels themselves.
    assert abs(scale - 1.0) < 0.02 and zero_point == 0


def test_convert_prints_the_parity_report(tiny_run, tmp_path, capsys):
    code, out, _ = smartbin(
        capsys, "convert", tiny_run, "--quantize", "float16", "--out", tmp_path / "b", "--version", "v-1"
    )
    assert code == 0
    assert "parity on 15 test images: keras 100.0%, tflite 100.0%" in out
    assert "version v-1" in out
    assert load_bundle(tmp_path / "b").version == "v-1"


def test_convert_replaces_an_existing_bundle(bundles, tiny_run, tmp_path):
    out = shutil.copytree(bundles["float32"][1], tmp_path / "bundle")
    result = convert_run(tiny_run, "int8", out, representative=6)
    assert load_bundle(out).quantization == "int8"
    assert result.bundle == out
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging or .old left behind


def _broken_calibration(convert):
    """A classic int8 bug: calibrate on pixels scaled to 0..1 while the model is fed 0..255."""

    def broken(model, quantization, representative):
        def scaled():
            for (frame,) in representative():
                yield [frame / 255.0]

        return convert(model, quantization, scaled)

    return broken


def test_gate_refuses_a_broken_int8_conversion_and_keeps_the_good_bundle(
    bundles, tiny_run, tmp_path, capsys, monkeypatch
):
    good = shutil.copytree(bundles["int8"][1], tmp_path / "bundle")
    before = file_sha256(good / "model.tflite"), (good / "manifest.json").read_text()
    monkeypatch.setattr(tflite, "convert_keras", _broken_calibration(tflite.convert_keras))

    code, out, err = smartbin(capsys, "convert", tiny_run, "--quantize", "int8", "--out", good)
    assert code == 1
    assert out.startswith("parity on 15 test images: keras 100.0%, tflite ")
    assert err.startswith("smartbin: error: parity gate failed: TFLite accuracy")
    assert "below Keras 100.0% on 15 test images" in err and "no bundle was written" in err
    assert len(err.strip().splitlines()) == 1
    assert (file_sha256(good / "model.tflite"), (good / "manifest.json").read_text()) == before

    code, _, err = smartbin(capsys, "convert", tiny_run, "--quantize", "int8", "--out", tmp_path / "new")
    assert code == 1 and "parity gate failed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_gate_catches_a_manifest_with_wrong_input_scaling(tiny_run, tmp_path):
    """A float model whose manifest says pixels are scaled to 0..1 (the model rescales them again)."""
    run = load_run(tiny_run)
    model = load_keras_model(run)
    wrong = InputSpec(height=32, width=32, scale=1 / 255)
    bundle = write_bundle(
        tmp_path / "b",
        tflite.convert_keras(model, "float32"),
        name="x",
        labels=run.labels,
        input_spec=wrong,
        quantization="float32",
    )
    frames = load_frames(run.splits["test"], run.input_spec())
    truth = np.array([run.label_index(ex.label) for ex in run.splits["test"]])
    scores, runtime = bundle_scores(bundle, frames)
    report = compare(keras_scores(model, frames), scores, truth, split="test", runtime=runtime)
    assert report.keras_accuracy == 1.0
    assert report.tflite_accuracy <= 0.5
    with pytest.raises(ParityGateError, match="parity gate failed"):
        report.check(1.0)
    report.check(100.0)  # a generous gate lets it through: the threshold is what decides


def test_max_drop_is_respected_both_ways(tiny_run, tmp_path):
    result = convert_run(tiny_run, "float32", tmp_path / "b", max_drop=0.0)
    assert result.parity.drop_points <= 0.0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["metrics"]["max_drop_points"] == 0.0


def test_gate_allows_exactly_max_drop():
    """One image lost of 100 is a drop of exactly 1.0 point: allowed by --max-drop 1, not by 0.9."""
    truth = np.zeros(100, int)
    keras = np.tile([0.9, 0.1], (100, 1))
    tflite_scores = keras.copy()
    tflite_scores[:1] = [0.4, 0.6]
    keras[-10:] = [0.1, 0.9]  # keras: 90%, tflite: 89%
    tflite_scores[-10:] = [0.1, 0.9]
    report = compare(keras, tflite_scores, truth, split="test", runtime="x")
    assert (report.keras_accuracy, report.tflite_accuracy, report.drop_points) == (0.9, 0.89, 1.0)
    report.check(1.0)
    with pytest.raises(
        ParityGateError, match=r"1.0 points below Keras 90.0% on 100 test images \(allowed: 0.9\)"
    ):
        report.check(0.9)


def test_the_gate_reports_each_photo_sets_share():
    truth = np.array([0, 0, 1, 1, 0, 1])
    keras = np.eye(2)[[0, 0, 1, 1, 0, 0]]  # wrong on the last (floor) photo
    tflite_scores = np.eye(2)[[0, 1, 1, 1, 0, 0]]  # and on the second (board) one
    sources = ["board", "board", "board", "board", "floor", "floor"]
    assert accuracy_by_source(keras, tflite_scores, truth, [*sources[:-1], None]) == {
        "board": {"images": 4, "keras_accuracy": 1.0, "tflite_accuracy": 0.75},
        "floor": {"images": 1, "keras_accuracy": 1.0, "tflite_accuracy": 1.0},  # no set: left out
    }
    assert accuracy_by_source(keras, tflite_scores, truth, sources)["floor"]["keras_accuracy"] == 0.5
