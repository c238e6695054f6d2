"""Backbones: the EfficientNet-Lite0 build reproduces the reference outputs; bad weights files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from smartbin.device.errors import SmartbinError  # noqa: E402
from smartbin.training.backbones import (  # noqa: E402
    BackboneSpec,
    WeightsError,
    build_backbone,
    build_efficientnet_lite0,
    load_lite0_npz,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
LITE0_NPZ = SHARED / "weights" / "efficientnet_lite0_imagenet_torch_layout.npz"
LITE0_REFERENCE = SHARED / "weights" / "efficientnet_lite0_reference.json"
MOBILENET_H5 = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"
needs_shared = pytest.mark.skipif(
    not LITE0_NPZ.is_file(), reason="../shared/weights is not beside the repository"
)


@needs_shared
def test_lite0_weights_reproduce_the_reference_features_and_logits() -> None:
    from PIL import Image

    model = build_efficientnet_lite0((224, 224))
    load_lite0_npz(model, LITE0_NPZ)
    with np.load(LITE0_NPZ) as arrays:
        fc_weight, fc_bias = arrays["_fc.weight"], arrays["_fc.bias"]
    reference = json.loads(LITE0_REFERENCE.read_text())["reference"]
    images = []
    for ref in reference:  # as the reference was made: PIL bilinear to 224x224, raw pixels in
        with Image.open(SHARED / ref["image"]) as image:
            images.append(
                np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
            )
    features = model.predict(np.stack(images), verbose=0)
    for ref, feature in zip(reference, features, strict=True):
        np.testing.assert_allclose(feature[:8], ref["pooled_features_first8"], atol=2e-3)
        assert feature.mean() == pytest.approx(ref["pooled_features_mean"], abs=1e-3)
        logits = feature @ fc_weight.T + fc_bias
        top5 = np.argsort(-logits)[:5]
        assert top5.tolist() == ref["imagenet_top5"]
        np.testing.assert_allclose(logits[top5], ref["imagenet_top5_logits"], atol=1e-2)


def test_lite0_architecture_matches_the_published_shapes() -> None:
    model = build_efficientnet_lite0((64, 64))
    assert model.output_shape == (None, 1280)
    assert model.count_params() == 3_413_024  # 247 arrays of the .npz minus the 1000-class classifier
    assert model.get_layer("block15_project_conv").kernel.shape == (1, 1, 1152, 320)
    assert model.get_layer("block0_dwconv").kernel.shape == (3, 3, 32, 1)


def test_lite0_loader_refuses_a_file_that_does_not_fit(tmp_path: Path) -> None:
    model = build_efficientnet_lite0((32, 32))
    np.savez(tmp_path / "wrong.npz", **{"_conv_stem.weight": np.zeros((16, 3, 3, 3), np.float32)})
    with pytest.raises(WeightsError, match=r"_conv_stem.weight \(16, 3, 3, 3\) does not fit layer stem_conv"):
        load_lite0_npz(model, tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(WeightsError, match=r"not a readable \.npz"):
        load_lite0_npz(model, tmp_path / "junk.npz")
    with pytest.raises(WeightsError, match="not found"):
        load_lite0_npz(model, tmp_path / "missing.npz")


def test_mobilenet_v2_refuses_weights_of_another_width(tmp_path: Path) -> None:
    # The same kind of file as ../shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5
    small = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    path = tmp_path / "mnv2_035.weights.h5"
    small.save_weights(path)
    reloaded = build_backbone(BackboneSpec("mobilenet_v2", (32, 32), str(path), alpha=0.35))
    for a, b in zip(reloaded.weights, small.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(WeightsError, match=r"does not fit mobilenet_v2 alpha=0\.5"):
        build_backbone(BackboneSpec("mobilenet_v2", (32, 32), str(path), alpha=0.5))


@needs_shared
def test_mobilenet_v2_loads_the_shared_weights_and_scales_inside() -> None:
    model = build_backbone(BackboneSpec("mobilenet_v2", (96, 96), str(MOBILENET_H5), alpha=0.35))
    assert model.output_shape == (None, 1280)
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 127.5)


def test_unknown_backbone_and_lite0_download_give_clear_errors() -> None:
    with pytest.raises(SmartbinError, match="unknown backbone 'resnet'"):
        build_backbone(BackboneSpec("resnet", (32, 32), None))
    with pytest.raises(WeightsError, match="pass --weights PATH"):
        build_backbone(BackboneSpec("efficientnet_lite0", (32, 32), "imagenet"))
