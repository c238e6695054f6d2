"""Bundles that lie: a manifest that does not fit its model, or a model whose scores mean nothing.

Each is refused with one line when the classifier loads it (the daemon, ``classify``, the parity
gate, ``evaluate``) and when a bin verifies it before it goes live (``smartbin store verify``,
what ``deploy`` runs), instead of misclassifying every item in silence. The lying models are
real TFLite files (tests/fixtures/make_bad_models.py); lying manifests are honest fixtures with
one field changed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from smartbin.device.config import parse_config
from smartbin.device.errors import BundleError
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.model import DEFAULT_MODEL, load_classifier
from smartbin.device.vision.store import verify_bundle

from .conftest import MODELS, assert_one_line_error, run_smartbin

# name: (fixture, manifest changes ("input" keys are merged), what the one line says)
LIES: dict[str, tuple[str, dict[str, Any], str]] = {
    "float scaling on a uint8 model": (
        "colour3-int8",
        {"input": {"scale": 1 / 255}},
        "does not fit the model's uint8 input",
    ),
    "int8 offset on a uint8 model": (
        "colour3-int8",
        {"input": {"offset": -128.0}},
        "-128.0..127.0 of its 0..255",
    ),
    "scale that clips most pixels": ("colour3-int8", {"input": {"scale": 4.0}}, "0.0..1020.0 of its 0..255"),
    "int8 said of a uint8 input": ("colour3-int8", {"input": {"dtype": "int8"}}, "says input dtype int8"),
    "float32 said of a uint8 input": (
        "colour3-int8",
        {"input": {"dtype": "float32"}},
        "says input dtype float32",
    ),
    "uint8 said of a float32 input": (
        "colour3-float32",
        {"input": {"dtype": "uint8"}},
        "the model takes float32",
    ),
    "input size": (
        "colour3-int8",
        {"input": {"height": 64, "width": 64}},
        "does not match manifest (1, 64, 64, 3)",
    ),
    "more labels than outputs": (
        "colour3-int8",
        {"labels": ["can", "glass", "plastic", "paper"]},
        "3 outputs but the manifest lists 4 labels",
    ),
    "constant float32 scores": ("bad-constant-float32", {}, "the same scores (0.333, 0.333, 0.333)"),
    "constant int8 scores": ("bad-constant-int8", {}, "the same scores"),
    "logits said to be probabilities": ("bad-linear-float32", {}, "outputs probabilities, but it gives"),
    "NaN scores": ("bad-nan-float32", {}, "non-finite scores (nan, nan, nan)"),
}

# Refused from the manifest alone (load_bundle), before any interpreter is made.
STATIC_LIES: dict[str, tuple[dict[str, Any], str]] = {
    "NaN scale": ({"input": {"scale": math.nan}}, "do not map pixels to finite numbers"),
    "infinite scale": ({"input": {"scale": math.inf}}, "do not map pixels to finite numbers"),
    "infinite offset": ({"input": {"offset": -math.inf}}, "do not map pixels to finite numbers"),
    "scale beyond float32": ({"input": {"scale": 1e38}}, "do not map pixels to finite numbers"),
    "zero scale": ({"input": {"scale": 0}}, "scale is 0"),
    "unknown dtype": ({"input": {"dtype": "float64"}}, "unknown input dtype 'float64'"),
    "unknown output kind": ({"output": {"kind": "softmax"}}, "'output' kind must be one of"),
    "a label with a line break": ({"labels": ["can", "gl\nass", "plastic"]}, "without control characters"),
}


def lying_bundle(tmp_path: Path, fixture: str, changes: dict[str, Any]) -> Path:
    bundle = tmp_path / f"lie-{fixture}"
    shutil.copytree(MODELS / fixture, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key, value in changes.items():
        manifest[key] = {**manifest[key], **value} if key == "input" else value
    (bundle / "manifest.json").write_text(json.dumps(manifest))  # NaN and Infinity as Python writes them
    return bundle


def one_line(err: pytest.ExceptionInfo[BundleError]) -> str:
    text = str(err.value)
    assert "\n" not in text and "array(" not in text and "np." not in text, text
    return text


@pytest.mark.parametrize("name", LIES)
def test_a_lying_bundle_is_refused_at_load_and_at_verification(tmp_path: Path, name: str) -> None:
    fixture, changes, says = LIES[name]
    bundle = lying_bundle(tmp_path, fixture, changes)
    config = parse_config({})
    with pytest.raises(BundleError) as err:
        load_classifier(bundle, config)  # the daemon's start and reload
    assert says in one_line(err)
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle, config)  # before a deployed bundle goes live
    assert says in one_line(err)


@pytest.mark.parametrize("name", STATIC_LIES)
def test_a_manifest_with_impossible_numbers_is_refused_before_loading(tmp_path: Path, name: str) -> None:
    changes, says = STATIC_LIES[name]
    with pytest.raises(BundleError) as err:
        load_bundle(lying_bundle(tmp_path, "colour3-float32", changes))
    assert says in one_line(err)


def test_honest_bundles_pass_every_check() -> None:
    config = parse_config({})
    for bundle in (
        MODELS / "colour3-int8",
        MODELS / "colour3-float32",
        MODELS / "colour4-int8",
        DEFAULT_MODEL,
    ):
        assert load_classifier(bundle, config).bundle.path == bundle


def test_logits_are_fine_when_the_manifest_says_logits(tmp_path: Path) -> None:
    bundle = lying_bundle(tmp_path, "bad-linear-float32", {"output": {"kind": "logits"}})
    classifier = load_classifier(bundle, parse_config({}))
    prediction = classifier.classify(np.full((40, 40, 3), (220, 30, 30), np.uint8))
    assert prediction.label == "can" and prediction.confidence > 0.9
    assert sum(prediction.scores.values()) == pytest.approx(1.0)


@pytest.fixture
def red_photo(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), np.full((40, 40, 3), (30, 30, 220), np.uint8))  # BGR
    return path


@pytest.mark.parametrize(
    "fixture, changes, says",
    [
        ("colour3-int8", {"input": {"scale": 1 / 255}}, "does not fit the model's uint8 input"),
        ("bad-constant-int8", {}, "the same scores"),
        ("colour3-float32", {"input": {"scale": math.nan}}, "do not map pixels to finite numbers"),
    ],
)
def test_smartbin_classify_refuses_a_lying_bundle_in_one_line(
    tmp_path: Path, red_photo: Path, fixture: str, changes: dict[str, Any], says: str
) -> None:
    bundle = lying_bundle(tmp_path, fixture, changes)
    result = run_smartbin("classify", red_photo, "--model", bundle)
    assert_one_line_error(result, str(bundle), says)
    assert result.stdout == ""


def test_smartbin_store_verify_and_simulate_refuse_a_lying_bundle(tmp_path: Path) -> None:
    bundle = lying_bundle(tmp_path, "bad-linear-float32", {})
    verify = run_smartbin("store", "verify", bundle, "--models-dir", tmp_path / "store")
    assert_one_line_error(verify, "outputs probabilities, but it gives")
    simulate = run_smartbin("simulate", "--fast", "--model", bundle, "--state-dir", tmp_path / "sim")
    assert_one_line_error(simulate, "outputs probabilities, but it gives")
