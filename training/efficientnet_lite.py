"""EfficientNet-Lite in Keras, one builder for every variant, and loading PyTorch-layout weights into it.

Lite is EfficientNet made for integer accelerators: ReLU6, no squeeze-excite, a fixed 32-channel stem
and 1280-channel head, TF "same" padding, BatchNorm epsilon 1e-3. The variants differ only in their
stage table (:data:`~.lite_variants.EFFICIENTNET_LITE`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .lite_variants import BN_EPSILON, LITE_FEATURES, LITE_STEM_CHANNELS, Stage, WeightsError


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def build_efficientnet_lite(name: str, stages: tuple[Stage, ...], input_size: tuple[int, int]) -> keras.Model:
    """EfficientNet-Lite without its classifier: raw pixels in, 1280 pooled features out."""
    inputs = keras.Input(shape=(*input_size, 3), name="pixels")
    x = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = layers.Conv2D(LITE_STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    block = 0
    for repeats, kernel, stride, expansion, channels_in, channels_out in stages:
        for r in range(repeats):
            c_in = channels_in if r == 0 else channels_out
            s = stride if r == 0 else 1
            x = _mbconv(x, block, kernel, s, expansion, c_in, channels_out)
            block += 1
    x = layers.Conv2D(LITE_FEATURES, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)


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


_TORCH_BLOCK_PARTS = {
    "expand_conv": ("_expand_conv", "conv"),
    "expand_bn": ("_bn0", "bn"),
    "dwconv": ("_depthwise_conv", "dwconv"),
    "dw_bn": ("_bn1", "bn"),
    "project_conv": ("_project_conv", "conv"),
    "project_bn": ("_bn2", "bn"),
}


def _torch_names(model: keras.Model) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch parameter prefix, kind) for every layer with weights."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}
    names |= {"head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn")}
    for layer in model.layers:
        if not layer.name.startswith("block"):
            continue
        index, _, part = layer.name[len("block") :].partition("_")
        if part in _TORCH_BLOCK_PARTS:
            torch, kind = _TORCH_BLOCK_PARTS[part]
            names[layer.name] = (f"_blocks.{index}.{torch}", kind)
    return names


def load_torch_layout(model: keras.Model, arrays: dict[str, np.ndarray], source: str) -> None:
    """Load PyTorch-layout EfficientNet-Lite arrays into :func:`build_efficientnet_lite`'s model.

    Conv kernels go from (out, in, kh, kw) to Keras (kh, kw, in, out); depthwise kernels from
    (channels, 1, kh, kw) to (kh, kw, channels, 1). Every array but the ImageNet classifier (``_fc``)
    must be used and fit exactly; nothing is loaded unless all of them do.
    """
    variant = model.name
    values_by_layer: dict[str, list[np.ndarray]] = {}
    used: set[str] = set()
    for layer_name, (prefix, kind) in _torch_names(model).items():
        layer = model.get_layer(layer_name)
        if kind == "bn":
            keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            values = [_take(arrays, k, source, variant) for k in keys]
        else:
            keys = [f"{prefix}.weight"]
            kernel = _take(arrays, keys[0], source, variant)
            values = [kernel.transpose(2, 3, 0, 1) if kind == "dwconv" else kernel.transpose(2, 3, 1, 0)]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            got = ", ".join(f"{k} {arrays[k].shape}" for k in keys)
            raise WeightsError(
                f"{source}: {got} does not fit layer {layer_name} of {variant} {expected}; use {_file_of(variant)}"
            )
        values_by_layer[layer_name] = values
        used.update(keys)
    unused = sorted(k for k in arrays if k not in used and not k.startswith("_fc."))
    if unused:
        raise WeightsError(
            f"{source}: {len(unused)} arrays (e.g. {unused[0]}) have no place in {variant}; use {_file_of(variant)}"
        )
    for layer_name, values in values_by_layer.items():
        model.get_layer(layer_name).set_weights(values)


def _take(arrays: dict[str, np.ndarray], key: str, source: str, variant: str) -> np.ndarray:
    if key not in arrays:
        raise WeightsError(f"{source}: array {key} is missing; use {_file_of(variant)}")
    return arrays[key]


def _file_of(variant: str) -> str:
    return f"an {variant.replace('efficientnet_lite', 'EfficientNet-Lite')} weights file"
