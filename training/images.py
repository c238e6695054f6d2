"""Image loading shared by training, conversion and evaluation.

Every image becomes an 8-bit RGB array the same way everywhere, so a model sees the same
pixels when it is trained, calibrated, checked for parity and evaluated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from smartbin.device.bundle import InputSpec
from smartbin.device.classifier import resize_frame
from smartbin.device.errors import SmartbinError


class ImageLoadError(SmartbinError):
    """A file is not a readable image."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (grayscale, palette, CMYK, alpha, 16-bit) to RGB.

    Transparent pixels are composited on white, the background of the photos we train on,
    instead of whatever colour happens to hide under alpha 0.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Open, fully decode and orient an image file as a PIL RGB image.

    Raises :class:`ImageLoadError` for files that are missing, not images, or truncated.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not later
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: not a readable image ({exc})") from exc


def load_rgb(path: str | Path) -> np.ndarray:
    """Load an image file as a uint8 array of shape (H, W, 3), RGB, EXIF orientation applied."""
    return np.asarray(open_rgb(path), dtype=np.uint8)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """Resize an RGB array to ``size`` = (height, width) exactly as the device's classifier does.

    Training on the pixels the bin will feed the model avoids a train/deploy mismatch.
    """
    return resize_frame(rgb, InputSpec(height=size[0], width=size[1], resize=resize))
