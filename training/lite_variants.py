"""EfficientNet-Lite's stage tables, and the constants and error that :mod:`.backbones`,
:mod:`.efficientnet_lite` and :mod:`.pretrained` share.

No Keras or NumPy here: the CLI reads the tables through :data:`~.backbones.BACKBONES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartbin.device.errors import SmartbinError

# One MBConv stage: (repeats, kernel, stride, expansion, channels in, channels out).
Stage = tuple[int, int, int, int, int, int]


@dataclass(frozen=True)
class LiteVariant:
    stages: tuple[Stage, ...]
    input_size: int  # the native (default) square input size


# From ../shared/weights/README.md (the EfficientNet-Lite release): only the stage tables differ.
EFFICIENTNET_LITE: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(
        (
            (1, 3, 1, 1, 32, 16),
            (2, 3, 2, 6, 16, 24),
            (2, 5, 2, 6, 24, 40),
            (3, 3, 2, 6, 40, 80),
            (3, 5, 1, 6, 80, 112),
            (4, 5, 2, 6, 112, 192),
            (1, 3, 1, 6, 192, 320),
        ),
        224,
    ),
    "efficientnet_lite1": LiteVariant(
        (
            (1, 3, 1, 1, 32, 16),
            (3, 3, 2, 6, 16, 24),
            (3, 5, 2, 6, 24, 40),
            (4, 3, 2, 6, 40, 80),
            (4, 5, 1, 6, 80, 112),
            (5, 5, 2, 6, 112, 192),
            (1, 3, 1, 6, 192, 320),
        ),
        240,
    ),
    "efficientnet_lite2": LiteVariant(
        (
            (1, 3, 1, 1, 32, 16),
            (3, 3, 2, 6, 16, 24),
            (3, 5, 2, 6, 24, 48),
            (4, 3, 2, 6, 48, 88),
            (4, 5, 1, 6, 88, 120),
            (5, 5, 2, 6, 120, 208),
            (1, 3, 1, 6, 208, 352),
        ),
        260,
    ),
}
LITE_STEM_CHANNELS = 32  # the same stem and head in every Lite variant
LITE_FEATURES = 1280
BN_EPSILON = 1e-3


class WeightsError(SmartbinError):
    """A weights file or package is missing or does not fit the chosen architecture."""
