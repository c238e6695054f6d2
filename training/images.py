"""Image loading for training, conversion and evaluation: the bin's own decoder.

Every image becomes an 8-bit RGB array with :func:`smartbin.device.vision.images.decode_image`, the
function the bin's folder camera, ``classify`` and ``evaluate`` use, so a model sees the same
pixels when it is trained, calibrated, checked for parity, evaluated and run on a bin
(transparency on white, 16-bit scaled, EXIF orientation applied: see that module).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smartbin.device.vision.bundle import InputSpec
from smartbin.device.vision.classifier import resize_frame
from smartbin.device.vision.images import ImageError, decode_image

#: A file is not a readable image (the bin's decoder refused it).
ImageLoadError = ImageError


def load_rgb(path: str | Path) -> np.ndarray:
    """Load an image file as a uint8 array of shape (H, W, 3), RGB, exactly as the bin decodes it.

    Raises :class:`ImageLoadError` for files that are missing, not images, or truncated.
    """
    return decode_image(path)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """Resize an RGB array to ``size`` = (height, width) exactly as the device's classifier does.

    Training on the pixels the bin will feed the model avoids a train/deploy mismatch.
    """
    return resize_frame(rgb, InputSpec(height=size[0], width=size[1], resize=resize))
