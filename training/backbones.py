"""ImageNet backbones that take raw RGB pixels (0..255) and return pooled features.

Preprocessing is the first layer of every backbone, so the trained model, the TFLite model and
the serving model all take raw pixels and nobody has to remember each network's scaling.

- ``efficientnet_lite0``: a small builder of EfficientNet-Lite0 (ReLU6, no squeeze-excite, TF "same"
  padding, BatchNorm epsilon 1e-3) whose weights load from the PyTorch-layout ``.npz`` described in
  ``../shared/weights/README.md``.
- ``mobilenet_v2``: ``keras.applications.MobileNetV2`` (width ``alpha``, any square input size).
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from smartbin.device.errors import SmartbinError

from .cli import BACKBONES

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expansion, in, out).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_FEATURES = 1280
BN_EPSILON = 1e-3


class WeightsError(SmartbinError):
    """A weights file is missing or does not fit the chosen architecture."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    input_size: tuple[int, int]
    weights: str | None  # "imagenet", a file path, or None for random weights
    alpha: float = 1.0  # MobileNetV2 width


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def build_efficientnet_lite0(input_size: tuple[int, int]) -> keras.Model:
    """EfficientNet-Lite0 without its classifier: raw pixels in, 1280 pooled features out."""
    inputs = keras.Input(shape=(*input_size, 3), name="pixels")
    x = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    block = 0
    for repeats, kernel, stride, expansion, channels_in, channels_out in LITE0_STAGES:
        for r in range(repeats):
            c_in = channels_in if r == 0 else channels_out
            s = stride if r == 0 else 1
            x = _mbconv(x, block, kernel, s, expansion, c_in, channels_out)
            block += 1
    x = layers.Conv2D(LITE0_FEATURES, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _mbconv(x, block: int, kernel: int, stride: int, expansion: int, c_in: int, c_out: int):
    prefix = f"block{block}_"
    shortcut = x
    if expansion != 1:
        x = layers.Conv2D(c_in * expansion, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
        x = _relu6(prefix + "expand_relu")(_bn(prefix + "expand_bn")(x))
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv"
    )(x)
    x = _relu6(prefix + "dw_relu")(_bn(prefix + "dw_bn")(x))
    x = layers.Conv2D(c_out, 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
    x = _bn(prefix + "project_bn")(x)
    if stride == 1 and c_in == c_out:
        x = layers.Add(name=prefix + "add")([x, shortcut])
    return x


def _lite0_torch_names(model: keras.Model) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch parameter prefix, kind) for every layer with weights."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}
    names |= {"head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn")}
    for layer in model.layers:
        if not layer.name.startswith("block"):
            continue
        index, _, part = layer.name[len("block") :].partition("_")
        torch = {
            "expand_conv": ("_expand_conv", "conv"),
            "expand_bn": ("_bn0", "bn"),
            "dwconv": ("_depthwise_conv", "dwconv"),
            "dw_bn": ("_bn1", "bn"),
            "project_conv": ("_project_conv", "conv"),
            "project_bn": ("_bn2", "bn"),
        }.get(part)
        if torch:
            names[layer.name] = (f"_blocks.{index}.{torch[0]}", torch[1])
    return names


def load_lite0_npz(model: keras.Model, path: str | Path) -> None:
    """Load PyTorch-layout EfficientNet-Lite0 arrays into :func:`build_efficientnet_lite0`'s model.

    Conv kernels go from (out, in, kh, kw) to Keras (kh, kw, in, out); depthwise kernels from
    (channels, 1, kh, kw) to (kh, kw, channels, 1). Every array must be used and fit exactly.
    """
    path = Path(path)
    arrays = _read_npz(path)
    used: set[str] = set()
    for layer_name, (prefix, kind) in _lite0_torch_names(model).items():
        layer = model.get_layer(layer_name)
        if kind == "bn":
            keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            values = [_take(arrays, k, path) for k in keys]
        else:
            keys = [f"{prefix}.weight"]
            kernel = _take(arrays, keys[0], path)
            values = [kernel.transpose(2, 3, 0, 1) if kind == "dwconv" else kernel.transpose(2, 3, 1, 0)]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            got = ", ".join(f"{k} {arrays[k].shape}" for k in keys)
            raise WeightsError(
                f"{path}: {got} does not fit layer {layer_name} of efficientnet_lite0 {expected}; use an EfficientNet-Lite0 weights file"
            )
        layer.set_weights(values)
        used.update(keys)
    unused = sorted(k for k in arrays if k not in used and not k.startswith("_fc."))
    if unused:
        raise WeightsError(
            f"{path}: {len(unused)} arrays (e.g. {unused[0]}) have no place in efficientnet_lite0; use an EfficientNet-Lite0 weights file"
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; give an existing file, 'imagenet' or 'none'")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k].astype(np.float32) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable .npz weights file ({exc})") from exc


def _take(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise WeightsError(f"{path}: array {key} is missing; use an EfficientNet-Lite0 weights file")
    return arrays[key]


def build_mobilenet_v2(input_size: tuple[int, int], alpha: float, weights: str | None) -> keras.Model:
    """keras.applications.MobileNetV2 without top, with its [-1, 1] scaling as the first layer."""
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
    return keras.Model(inputs, base.output, name=f"mobilenet_v2_{alpha:g}")


def build_tiny_cnn(input_size: tuple[int, int]) -> keras.Model:
    """A three-layer CNN for tests and smoke checks (no pretrained weights exist; not for real use).

    Shallow on purpose: deep random networks with BatchNorm scramble their input, so only a shallow
    random base gives features a test can train a head on in a few epochs.
    """
    inputs = keras.Input(shape=(*input_size, 3), name="pixels")
    x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = _relu6(f"relu{i}")(_bn(f"bn{i}")(x))
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def build_backbone(spec: BackboneSpec) -> keras.Model:
    """Build the named backbone and load its weights ("imagenet" may download; a path never does)."""
    if spec.name == "efficientnet_lite0":
        model = build_efficientnet_lite0(spec.input_size)
        if spec.weights == "imagenet":
            raise WeightsError(
                "efficientnet_lite0 has no Keras download; pass --weights PATH to efficientnet_lite0_imagenet_torch_layout.npz"
            )
        if spec.weights is not None:
            load_lite0_npz(model, spec.weights)
        return model
    if spec.name == "mobilenet_v2":
        return build_mobilenet_v2(spec.input_size, spec.alpha, spec.weights)
    if spec.name == "tiny_cnn":
        if spec.weights is not None:
            raise WeightsError("tiny_cnn has no pretrained weights; use --weights none")
        return build_tiny_cnn(spec.input_size)
    raise SmartbinError(f"unknown backbone {spec.name!r}; choose one of {', '.join(BACKBONES)}")
