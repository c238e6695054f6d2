"""The converter reads what `smartbin train` really writes (not just this folder's hand-made run)."""

from __future__ import annotations

import json

import pytest

from smartbin.device.bundle import load_bundle
from smartbin.device.classifier import Classifier
from smartbin.device.cli import main
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
    assert bundle.manifest["training"]["backbone"] == info["backbone"]
    classifier = Classifier(bundle)
    with open(trained_run / "splits.csv") as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:]]
    test = [(path, label) for path, label, split in rows if split == "test"]
    correct = sum(classifier.classify(load_rgb(path)).label == label for path, label in test)
    assert correct / len(test) == pytest.approx(metrics["tflite_accuracy"])
