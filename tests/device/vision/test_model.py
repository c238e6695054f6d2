"""Which bundle the bin loads, and clear one-line refusals of bad ones."""

from __future__ import annotations

import json

import pytest

from smartbin.device.config import parse_config
from smartbin.device.decision import NO_FRAME, decide
from smartbin.device.errors import BundleError
from smartbin.device.vision.bundle import file_sha256, load_bundle
from smartbin.device.vision.classifier import Prediction
from smartbin.device.vision.model import DEFAULT_MODEL, check_bundle_fits, load_classifier, resolve_model_path

from ..conftest import MODELS, fast_config


def rewrite_manifest(bundle, **changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_the_colour_models_load_and_classify(tmp_path):
    config = fast_config(tmp_path)
    for name in ("colour3-int8", "colour3-float32"):
        classifier = load_classifier(MODELS / name, config)
        assert classifier.bundle.labels == ("can", "glass", "plastic")


def test_a_corrupt_model_file_is_refused(tmp_path, copy_model):
    bundle = copy_model("colour3-int8")
    data = bytearray((bundle / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        load_classifier(bundle, fast_config(tmp_path))
    assert "corrupt or truncated" in one_line(err)


def test_garbage_with_a_matching_checksum_cannot_be_loaded(tmp_path, copy_model):
    bundle = copy_model("colour3-int8")
    (bundle / "model.tflite").write_bytes(b"this is not a flatbuffer" * 10)
    rewrite_manifest(bundle, sha256=file_sha256(bundle / "model.tflite"))
    with pytest.raises(BundleError) as err:
        load_classifier(bundle, fast_config(tmp_path))
    assert "cannot be loaded" in one_line(err)


def test_a_missing_model_file_or_bundle_is_refused(tmp_path, copy_model):
    bundle = copy_model("colour3-int8")
    (bundle / "model.tflite").unlink()
    with pytest.raises(BundleError) as err:
        load_classifier(bundle, fast_config(tmp_path))
    assert "model file model.tflite is missing" in one_line(err)
    with pytest.raises(BundleError, match="no such model bundle"):
        load_classifier(tmp_path / "nothing", fast_config(tmp_path))


def test_wrong_labels_are_refused(tmp_path, copy_model):
    bundle = copy_model("colour3-int8")
    rewrite_manifest(bundle, labels=["paper", "glass", "plastic"])
    with pytest.raises(BundleError) as err:
        load_classifier(bundle, fast_config(tmp_path))
    assert "has no label can (its labels: paper, glass, plastic)" in one_line(err)


def test_labels_that_leave_a_compartment_empty_are_refused(tmp_path):
    config = fast_config(tmp_path, sorting={"labels": {"can": "can", "glass": "glass", "plastic": "glass"}})
    with pytest.raises(BundleError) as err:
        check_bundle_fits(load_bundle(MODELS / "colour3-int8"), config)
    assert "sends no label to compartment plastic" in one_line(err)


def test_a_no_move_label_may_be_missing_from_the_model(tmp_path):
    config = fast_config(tmp_path)  # maps empty = "none"; colour3 has no "empty"
    check_bundle_fits(load_bundle(MODELS / "colour3-int8"), config)
    check_bundle_fits(load_bundle(MODELS / "colour4-int8"), config)


def test_decide():
    sorting = parse_config({}).sorting
    scores = {"can": 0.9, "glass": 0.05, "plastic": 0.05}
    thresholds = {"can": 0.6, "glass": 0.95}
    assert decide(Prediction("can", 0.9, scores), sorting, thresholds).compartment == "can"
    assert decide(Prediction("can", 0.5, scores), sorting, thresholds).compartment == "other"
    assert decide(Prediction("glass", 0.9, scores), sorting, thresholds).reason == "low_confidence"
    assert decide(Prediction("empty", 0.9, scores), sorting, thresholds).compartment is None
    assert decide(Prediction("paper", 0.9, scores), sorting, thresholds).compartment == "other"
    assert decide(Prediction("wood", 0.9, scores), sorting, thresholds).reason == "unknown_label"
    assert decide(None, sorting, thresholds).reason == NO_FRAME


def test_model_resolution_order(tmp_path, copy_model):
    store = tmp_path / "models"
    config = fast_config(tmp_path, classifier={"model": ""}, paths={"models_dir": str(store)})
    assert resolve_model_path(config) == DEFAULT_MODEL
    store.mkdir()
    (store / "current").symlink_to(copy_model("colour4-int8"))
    assert resolve_model_path(config) == store / "current"
    pinned = fast_config(tmp_path, paths={"models_dir": str(store)})
    assert resolve_model_path(pinned) == MODELS / "colour3-int8"


def test_the_bundled_default_model_fits_the_default_config():
    config = parse_config({})
    classifier = load_classifier(DEFAULT_MODEL, config)
    assert set(config.sorting.labels) - {"empty"} <= set(classifier.bundle.labels)
