"""The converter reads what `smartbin train` really writes (not just this folder's hand-made run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.classifier import Classifier
from smartbin.training.images import load_rgb


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from smartbin.training.synthetic import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("train"))


def test_int8_conversion_of_a_smartbin_train_run(trained_run, tmp_path):
    out = tmp_path / "bundle"
    assert main(["convert", str(trained_run), "--out", str(out), "--representative", "16"]) == 0
    info = json.loads((trained_run / "run.json").read_text())
    bundle = load_bundle(out)
    metrics = bundle.manifest["metrics"]
    # Same model, same test split, same preprocessing: the gate's Keras accuracy is training's test accuracy.
    assert metrics["keras_accuracy"] == pytest.approx(info["metrics"]["test_accuracy"], abs=1e-4)
    assert bundle.labels == tuple(info["labels"])
    assert (bundle.input.height, bundle.input.width, bundle.input.dtype) == (*info["input_size"], "uint8")
    training = bundle.manifest["training"]
    assert training["backbone"] == info["backbone"]
    # Provenance without the training machine's paths: each photo set by name, photo count and one digest.
    (data_dir,) = info["data_dirs"]
    assert data_dir not in json.dumps(bundle.manifest) and str(trained_run) not in json.dumps(bundle.manifest)
    with open(trained_run / "splits.csv") as f:
        photos = [Path(line.split(",")[0]) for line in f.readlines()[1:]]
    lines = sorted(f"{p.parent.name}/{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in photos)
    assert training["data"] == [
        {
            "name": Path(data_dir).name,
            "images": len(photos),
            "sha256": hashlib.sha256("".join(lines).encode()).hexdigest(),
        }
    ]
    # The gate's figures per photo set: one set here, so all of the test split.
    assert metrics["by_source"] == {
        Path(data_dir).name: {
            "images": metrics["images"],
            "keras_accuracy": metrics["keras_accuracy"],
            "tflite_accuracy": metrics["tflite_accuracy"],
        }
    }
    classifier = Classifier(bundle)
    with open(trained_run / "splits.csv") as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:]]
    test = [(path, label) for path, label, split in rows if split == "test"]
    correct = sum(classifier.classify(load_rgb(path)).label == label for path, label in test)
    assert correct / len(test) == pytest.approx(metrics["tflite_accuracy"])
