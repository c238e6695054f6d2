"""Backbones: each EfficientNet-Lite build reproduces its reference outputs; bad weights files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from smartbin.device.errors import SmartbinError  # noqa: E402
from smartbin.training.backbones import BACKBONES, BackboneSpec, build_backbone  # noqa: E402
from smartbin.training.efficientnet_lite import build_efficientnet_lite, load_torch_layout  # noqa: E402
from smartbin.training.lite_variants import EFFICIENTNET_LITE, WeightsError  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared"
WEIGHTS = SHARED / "weights"
MOBILENET_H5 = WEIGHTS / "mobilenet_v2_0.35_224_no_top.weights.h5"
needs_shared = pytest.mark.skipif(
    not WEIGHTS.is_dir(), reason="../shared/weights is not beside the repository"
)


def _lite(name: str, size: int) -> keras.Model:
    return build_efficientnet_lite(name, EFFICIENTNET_LITE[name].stages, (size, size))


@needs_shared
@pytest.mark.parametrize("name", list(EFFICIENTNET_LITE))
def test_lite_weights_reproduce_the_reference_features_and_logits(name: str) -> None:
    from PIL import Image

    size = BACKBONES[name]  # each reference was made at the variant's native size
    npz = WEIGHTS / f"{name}_imagenet_torch_layout.npz"
    model = build_backbone(BackboneSpec(name, (size, size), str(npz)))
    with np.load(npz) as arrays:
        fc_weight, fc_bias = arrays["_fc.weight"], arrays["_fc.bias"]
    reference = json.loads((WEIGHTS / f"{name}_reference.json").read_text())["reference"]
    images = []
    for ref in reference:  # as the reference was made: PIL bilinear to the native size, raw pixels in
        with Image.open(SHARED / ref["image"]) as image:
            images.append(
                np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
            )
    features = model.predict(np.stack(images), verbose=0)
    for ref, feature in zip(reference, features, strict=True):
        np.testing.assert_allclose(feature[:8], ref["pooled_features_first8"], atol=2e-3)
        assert feature.mean() == pytest.approx(ref["pooled_features_mean"], abs=1e-3)
        logits = feature @ fc_weight.T + fc_bias
        top5 = np.argsort(-logits)[:5]
        assert top5.tolist() == ref["imagenet_top5"]
        np.testing.assert_allclose(logits[top5], ref["imagenet_top5_logits"], atol=1e-2)


def test_native_input_sizes_are_the_cli_defaults() -> None:
    assert {name: BACKBONES[name] for name in EFFICIENTNET_LITE} == {
        "efficientnet_lite0": 224,
        "efficientnet_lite1": 240,
        "efficientnet_lite2": 260,
    }


@pytest.mark.parametrize(
    ("name", "params", "blocks", "last_project"),
    [  # parameters: the arrays of each .npz minus the 1000-class classifier
        ("efficientnet_lite0", 3_413_024, 16, (1, 1, 1152, 320)),
        ("efficientnet_lite1", 4_189_344, 21, (1, 1, 1152, 320)),
        ("efficientnet_lite2", 4_869_168, 21, (1, 1, 1248, 352)),
    ],
)
def test_lite_architectures_match_the_published_shapes(
    name: str, params: int, blocks: int, last_project: tuple[int, ...]
) -> None:
    model = _lite(name, 64)
    assert model.name == name and model.output_shape == (None, 1280)
    assert model.count_params() == params
    assert model.get_layer(f"block{blocks - 1}_project_conv").kernel.shape == last_project
    assert model.get_layer("block0_dwconv").kernel.shape == (3, 3, 32, 1)
    with pytest.raises(ValueError):
        model.get_layer(f"block{blocks}_dwconv")


def test_lite0_loader_refuses_a_file_that_does_not_fit(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", **{"_conv_stem.weight": np.zeros((16, 3, 3, 3), np.float32)})
    with pytest.raises(WeightsError, match=r"_conv_stem.weight \(16, 3, 3, 3\) does not fit layer stem_conv"):
        build_backbone(BackboneSpec("efficientnet_lite0", (32, 32), str(tmp_path / "wrong.npz")))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(WeightsError, match=r"not a readable \.npz"):
        build_backbone(BackboneSpec("efficientnet_lite0", (32, 32), str(tmp_path / "junk.npz")))
    with pytest.raises(WeightsError, match="not found"):
        build_backbone(BackboneSpec("efficientnet_lite0", (32, 32), str(tmp_path / "missing.npz")))


def test_a_partial_file_loads_nothing() -> None:
    model = _lite("efficientnet_lite0", 32)
    before = [w.copy() for w in model.get_weights()]
    arrays = {"_conv_stem.weight": np.ones((32, 3, 3, 3), np.float32)}
    with pytest.raises(WeightsError, match=r"array _bn0\.weight is missing"):
        load_torch_layout(model, arrays, "partial.npz")
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


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


@pytest.mark.skipif(not MOBILENET_H5.is_file(), reason="../shared/weights is not beside the repository")
def test_mobilenet_v2_loads_the_shared_weights_and_scales_inside() -> None:
    model = build_backbone(BackboneSpec("mobilenet_v2", (96, 96), str(MOBILENET_H5), alpha=0.35))
    assert model.output_shape == (None, 1280)
    assert model.get_layer("preprocess").scale == pytest.approx(1 / 127.5)


def test_unknown_backbone_gives_a_clear_error() -> None:
    with pytest.raises(SmartbinError, match="unknown backbone 'resnet'"):
        build_backbone(BackboneSpec("resnet", (32, 32), None))
