"""Which threshold each label needs, and where it comes from (device/thresholds.py)."""

from __future__ import annotations

import json

import pytest

from smartbin.device.errors import BundleError
from smartbin.device.thresholds import Threshold, as_status, describe, thresholds_in_force
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.model import check_bundle_fits

from .conftest import fast_config

LABELS = ("can", "glass", "plastic")
MANIFEST = {"sorting": {"thresholds": {"can": 0.4, "glass": 0.85}}}


def test_the_config_overrides_the_model_and_the_model_the_default(tmp_path):
    by_model = thresholds_in_force(LABELS, MANIFEST, fast_config(tmp_path).sorting)
    assert by_model == {
        "can": Threshold(0.4, "model"),
        "glass": Threshold(0.85, "model"),
        "plastic": Threshold(0.6, "default"),  # the model chose none for it
    }
    everywhere = fast_config(tmp_path, sorting={"threshold": 0.7}).sorting
    assert set(thresholds_in_force(LABELS, MANIFEST, everywhere).values()) == {Threshold(0.7, "config")}
    one = fast_config(tmp_path, sorting={"threshold": 0.7, "thresholds": {"glass": 0.95}}).sorting
    mixed = thresholds_in_force(LABELS, MANIFEST, one)
    assert mixed["glass"] == Threshold(0.95, "config") and mixed["can"] == Threshold(0.7, "config")
    assert describe(as_status(mixed)) == "can 0.70 (config), glass 0.95 (config), plastic 0.70 (config)"
    assert thresholds_in_force(LABELS, {}, fast_config(tmp_path).sorting)["can"] == Threshold(0.6, "default")


@pytest.mark.parametrize(
    ("sorting", "says"),
    [
        ({"thresholds": {"paper": 0.5}}, "names 'paper', which is not a label"),
        ({"thresholds": {"can": 1.5}}, "gives 'can' 1.5; expected a confidence 0-1"),
        ({"thresholds": {"can": "high"}}, "gives 'can' 'high'"),
        ({"thresholds": {"can": True}}, "gives 'can' True"),
        ({"thresholds": ["can"]}, "should hold a 'thresholds' object"),
        ("high", "should hold a 'thresholds' object"),
    ],
)
def test_a_manifest_with_bad_thresholds_is_refused_in_one_line(copy_model, sorting, says):
    bundle = copy_model("colour3-int8")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(manifest | {"sorting": sorting}))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_daemon_sorts_by_the_models_thresholds_and_says_so(tmp_path, copy_model, make_bin):
    bundle = copy_model("colour3-int8")
    manifest = json.loads((bundle / "manifest.json").read_text())
    strict = manifest | {"sorting": {"thresholds": dict.fromkeys(LABELS, 1.0)}}
    (bundle / "manifest.json").write_text(json.dumps(strict))
    config = fast_config(tmp_path, classifier={"model": str(bundle)})
    with make_bin("red", "red", config=config) as b:
        sure = b.item()
        assert b.daemon.status()["thresholds"]["can"] == {"value": 1.0, "source": "model"}
    assert sure.label == "can" and sure.reason == "low_confidence" and sure.compartment == "other"
    with make_bin(
        "red",
        config=fast_config(tmp_path, classifier={"model": str(bundle)}, sorting={"thresholds": {"can": 0.5}}),
    ) as b:
        assert b.item().compartment == "can"  # the config overrides the model for can


def test_a_threshold_for_a_label_the_model_lacks_is_refused(tmp_path, copy_model):
    config = fast_config(tmp_path, sorting={"thresholds": {"glas": 0.9}})
    with pytest.raises(BundleError) as err:
        check_bundle_fits(load_bundle(copy_model("colour3-int8")), config)
    assert "has no label glas (its labels: can, glass, plastic); fix [sorting.thresholds]" in str(err.value)
