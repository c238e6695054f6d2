"""Image files to RGB pixels, one way for every part of smartbin.

Training, int8 calibration, the parity gate, ``evaluate``, ``classify``, the folder camera and
the simulation all decode photos with :func:`decode_image`, so a model sees the same pixels when
it is trained, converted, checked and used on a bin. OpenCV and numpy only: it runs on a Pi.

What a file becomes (an ``H x W x 3`` ``uint8`` RGB array):

- EXIF orientation is applied (the photo stands as a phone shows it);
- greyscale and palette images become RGB, CMYK is converted by the decoder;
- 16-bit channels are scaled to 8 bits as ``round(v * 255 / 65535)`` (``257 * k`` gives ``k``);
- transparent pixels are composited on white, the background of the photos we train on
  (not on whatever colour hides under alpha 0);
- 32-bit and floating-point pixels are refused, as are files that are not images or are cut short,
  and PNG, JPEG and BMP files whose header declares more than :data:`MAX_PIXELS` (checked before
  decoding: a 400-megapixel PNG of one colour is a few hundred kilobytes and would take gigabytes).

:func:`read_rgb` also refuses frames too small or too narrow to classify (:data:`MIN_SIDE`,
:data:`MAX_ASPECT`): a model would score them with confidence all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import CameraError, os_error_reason
from ..files import is_special_file
from .native import native_stderr_silenced

#: Frames with a side shorter than this many pixels are refused (a model's input is 224 px).
MIN_SIDE = 16
#: Frames whose long side is more than this many times their short side are refused.
MAX_ASPECT = 8.0

#: Images declaring more pixels than this are refused before decoding (300 MB as 8-bit RGB).
MAX_PIXELS = 100_000_000

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_HEADER_BYTES = 262_144  # a JPEG's EXIF block (with its thumbnail) comes before its frame header

# The eight ways a decoder may have turned a picture (EXIF orientations 1-8), identity first.
_TURNS: tuple[Callable[[np.ndarray], np.ndarray], ...] = tuple(
    (lambda a, k=k, flip=flip: np.rot90(np.fliplr(a) if flip else a, k))
    for flip in (False, True)
    for k in range(4)
)


class ImageError(CameraError):
    """A file that cannot be used as a photo; the message names it and says why."""


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB ``uint8`` of shape (H, W, 3) as described in the module docs.

    Raises :class:`ImageError` with one line: no such file, permission denied, is a directory,
    not an image (or corrupt), a truncated JPEG, or pixels of a kind smartbin does not take.
    """
    data = _read_bytes(Path(path))
    size = _declared_size(data[:_HEADER_BYTES].tobytes())
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ImageError(
            f"image {path} is {size[0]}x{size[1]} px, more than smartbin decodes "
            f"({MAX_PIXELS // 1_000_000} megapixels); shrink it"
        )
    jpeg = data[:2].tobytes() == _JPEG_START
    if jpeg and _JPEG_END not in data[-4096:].tobytes():
        # The end marker may be followed by a little padding; a file cut short has none near its
        # end (inside the compressed data 0xFF is followed by 0x00 or a restart marker), and
        # OpenCV may decode it anyway, the lost part grey.
        raise ImageError(
            f"image {path} is a truncated JPEG (it has no end marker); copy it again or delete it"
        )
    # OpenCV's decoder warnings ("PNG input buffer is incomplete") and libjpeg's "Corrupt JPEG data"
    # go straight to file descriptor 2; cv2.utils.logging, which could mute the first, is not in every
    # OpenCV a Pi gets (4.11 lacks it).
    with native_stderr_silenced():
        colour = _imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)  # oriented, alpha dropped
        raw = _imdecode(data, cv2.IMREAD_UNCHANGED) if _may_have_alpha(data) else None
    if colour is None:
        if raw is not None:
            raise ImageError(
                f"cannot read image {path}: {raw.dtype} pixels are not supported; save it as 8 or 16 bit"
            )
        raise ImageError(f"cannot read image {path}: not an image, or a corrupt one")
    if colour.dtype not in (np.uint8, np.uint16):
        raise ImageError(
            f"cannot read image {path}: {colour.dtype} pixels are not supported; save it as 8 or 16 bit"
        )
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4:
        bgr = _on_white(colour, _alpha_turned_like(raw, colour, path))
    elif colour.dtype == np.uint16:
        bgr = ((colour.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    else:
        bgr = colour
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_frame(rgb: np.ndarray, what: str | Path) -> None:
    """Refuse a frame too small or too narrow to classify (:class:`ImageError` naming ``what``)."""
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"image {what} is {width}x{height} px, too small to classify "
            f"(at least {MIN_SIDE} px on each side)"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"image {what} is {width}x{height} px, too narrow to classify "
            f"(the long side at most {MAX_ASPECT:g} times the short one)"
        )


def read_rgb(path: str | Path) -> np.ndarray:
    """:func:`decode_image`, then :func:`check_frame`: a photo the bin can classify, or :class:`ImageError`."""
    rgb = decode_image(path)
    check_frame(rgb, path)
    return rgb


def _read_bytes(path: Path) -> np.ndarray:
    try:
        if is_special_file(path):
            raise ImageError(f"cannot read image {path}: not a regular file (a pipe, socket or device)")
        data = np.fromfile(path, np.uint8)
    except OSError as exc:  # no such file or folder, permission denied, is a directory, ...
        raise ImageError(f"cannot read image {path}: {os_error_reason(exc)}") from None
    if data.size == 0:
        raise ImageError(f"cannot read image {path}: the file is empty")
    return data


def _declared_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header; None for other formats or an unreadable header."""
    if head.startswith(_PNG_START) and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = (abs(int.from_bytes(head[i : i + 4], "little", signed=True)) for i in (18, 22))
        return width, height
    if head.startswith(_JPEG_START):
        return _jpeg_frame_size(head)
    return None


def _jpeg_frame_size(head: bytes) -> tuple[int, int] | None:
    """Walk a JPEG's marker segments to its frame header (SOFn: length, precision, height, width)."""
    i = 2
    while i + 9 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
        elif marker in _JPEG_FRAMES:
            return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
        elif marker in (0xDA, 0xD9):  # the scan or the end came first
            return None
        else:
            i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _may_have_alpha(data: np.ndarray) -> bool:
    """False when a file surely has no transparency (saves a second decode): a JPEG, or a PNG
    whose colour type has no alpha and that has no ``tRNS`` chunk before its pixel data."""
    head = data[:65536].tobytes()
    if head.startswith(_JPEG_START):
        return False
    if head.startswith(_PNG_START) and b"IDAT" in head:
        colour_type = head[25]  # in IHDR, after the signature, chunk length and type, width, height, depth
        return colour_type in (4, 6) or b"tRNS" in head[: head.index(b"IDAT")]
    return True


def _imdecode(data: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None


def _alpha_turned_like(raw: np.ndarray, colour: np.ndarray, path: str | Path) -> np.ndarray:
    """``raw``'s alpha channel, turned as the decoder turned ``colour`` for the EXIF orientation.

    OpenCV applies the orientation only when it drops alpha, so the turn is found by matching
    the colour channels; when several turns match (a symmetric picture) the first one is taken.
    """
    for turn in _TURNS:
        turned = turn(raw)
        if turned.shape[:2] == colour.shape[:2] and np.array_equal(turned[..., :3], colour):
            return turned[..., 3]
    raise ImageError(f"cannot read image {path}: its transparency does not line up with its pixels")


def _on_white(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite ``bgr`` (8 or 16 bit) over white with ``alpha``; 8-bit result."""
    top = float(np.iinfo(bgr.dtype).max)
    weight = alpha.astype(np.float32)[..., np.newaxis] / top
    mixed = bgr.astype(np.float32) * (255.0 / top) * weight + 255.0 * (1.0 - weight)
    return np.round(mixed).astype(np.uint8)
