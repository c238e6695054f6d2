"""Backgrounds to paste items onto: procedural textures and floor patches from real photos.

A model that only ever sees glass on a white board can learn "real floor, so not glass". Pasting
items of every class onto these backgrounds breaks that shortcut (see :mod:`.cutpaste`).

- :func:`texture`: wood planks, carpet, grass, tiles or stripes, drawn with numpy/OpenCV noise
  and small palettes;
- :func:`floor_strips` and :func:`floor_from_strip`: the border of a photo of an item on a real floor
  (the drinking-waste crops leave about 13 % of floor around the item), mirrored and tiled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

#: The outer part of a photo's side taken as floor: the drinking-waste crops are the item's box
#: enlarged by 15 % each way, so about 11.5 % of each side is floor; 9 % keeps clear of the item.
STRIP_FRACTION = 0.09

_WOODS = ((150, 100, 60), (190, 140, 90), (110, 70, 40), (200, 170, 120), (90, 60, 45))
_CARPETS = ((120, 120, 125), (170, 155, 130), (60, 70, 110), (130, 50, 50), (70, 70, 70), (90, 110, 80))
_GRASSES = ((60, 120, 40), (90, 140, 50), (50, 90, 35), (120, 140, 60))
_TILES = ((200, 200, 195), (150, 120, 100), (90, 100, 110), (180, 90, 70), (60, 60, 65), (210, 190, 150))
_STRIPES = ((200, 40, 40), (30, 60, 140), (230, 200, 60), (40, 120, 70), (240, 240, 235), (30, 30, 35))


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: float) -> np.ndarray:
    """Noise of unit spread with about ``cells`` blobs across the larger side, float32 (H, W)."""
    height, width = size
    step = max(height, width) / cells
    grid = rng.normal(size=(max(2, round(height / step) + 2), max(2, round(width / step) + 2)))
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def _colour(
    rng: np.random.Generator, palette: Sequence[tuple[int, int, int]], jitter: int = 20
) -> np.ndarray:
    base = np.array(palette[rng.integers(len(palette))], dtype=np.float32)
    return base + rng.uniform(-jitter, jitter, size=3).astype(np.float32)


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def wood(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Planks with a warped ring grain and dark seams between them."""
    width = size[1]
    light, dark = _colour(rng, _WOODS), _colour(rng, _WOODS)
    plank = int(rng.integers(max(8, width // 6), max(9, width // 2)))
    x = np.arange(width, dtype=np.float32)[np.newaxis, :]
    warp = _smooth_noise(rng, size, rng.uniform(2, 5)) * rng.uniform(3, 10)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (x + warp) / rng.uniform(4, 14))
    grain = grain * 0.7 + 0.3 * _smooth_noise(rng, size, rng.uniform(20, 60)) * 0.5
    image = dark + (light - dark) * grain[..., np.newaxis]
    plank_shade = rng.uniform(0.85, 1.15, size=width // plank + 2)[(np.arange(width) // plank)]
    image *= plank_shade[np.newaxis, :, np.newaxis]
    image[:, (np.arange(width) % plank) < max(1, plank // 25)] *= 0.55
    return _finish(image)


def carpet(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Fine fibre noise on one colour, with a slight mottling."""
    base = _colour(rng, _CARPETS, 25)
    fibres = rng.normal(0, rng.uniform(12, 30), size=(*size, 3)).astype(np.float32)
    fibres = cv2.GaussianBlur(fibres, (0, 0), rng.uniform(0.5, 1.2))
    mottle = _smooth_noise(rng, size, rng.uniform(4, 12))[..., np.newaxis] * rng.uniform(5, 15)
    return _finish(base + fibres + mottle)


def grass(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Green blades: noise smeared along a direction near vertical, with light and dark patches."""
    base = _colour(rng, _GRASSES, 15)
    blades = rng.normal(0, 1, size=size).astype(np.float32)
    length = int(rng.integers(5, 15))
    kernel = np.zeros((length, length), np.float32)
    kernel[:, length // 2] = 1.0 / length
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(-25, 25), 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    blades = cv2.filter2D(blades, -1, kernel / max(kernel.sum(), 1e-6)) * rng.uniform(60, 110)
    patches = _smooth_noise(rng, size, rng.uniform(3, 8)) * 20
    shade = (blades + patches)[..., np.newaxis]
    return _finish(base + shade * np.array([0.6, 1.0, 0.4], np.float32))


def tiles(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Square tiles, each a little different, with grout lines."""
    height, width = size
    side = int(rng.integers(max(8, min(size) // 8), max(9, min(size) // 2)))
    base = _colour(rng, _TILES)
    rows, cols = height // side + 2, width // side + 2
    shades = base + rng.normal(0, 10, size=(rows, cols, 3)).astype(np.float32)
    yy, xx = np.indices(size)
    oy, ox = rng.integers(side, size=2)
    image = shades[(yy + oy) // side, (xx + ox) // side]
    image += rng.normal(0, 4, size=image.shape).astype(np.float32)
    grout = max(1, side // 16)
    lines = ((yy + oy) % side < grout) | ((xx + ox) % side < grout)
    image[lines] = _colour(rng, ((120, 120, 115), (60, 60, 60), (200, 200, 200)), 10)
    return _finish(image)


def stripes(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Straight stripes of two or three colours at any angle (rugs, mats, fabric)."""
    colours = np.stack([_colour(rng, _STRIPES, 25) for _ in range(int(rng.integers(2, 4)))])
    period = rng.uniform(6, max(7, min(size) / 4))
    angle = rng.uniform(0, np.pi)
    yy, xx = np.indices(size, dtype=np.float32)
    position = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    image = colours[position.astype(np.int64) % len(colours)]
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return _finish(image)


TEXTURES: dict[str, Callable[[tuple[int, int], np.random.Generator], np.ndarray]] = {
    "wood": wood,
    "carpet": carpet,
    "grass": grass,
    "tiles": tiles,
    "stripes": stripes,
}


def texture(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A procedural texture of one of :data:`TEXTURES`, chosen by ``rng``: uint8 RGB of ``size`` (H, W)."""
    draw = list(TEXTURES.values())[rng.integers(len(TEXTURES))]
    return draw(size, rng)


def floor_strips(rgb: np.ndarray) -> list[np.ndarray]:
    """The four border strips of a photo of an item on a floor, each turned to lie horizontally.

    Each strip is :data:`STRIP_FRACTION` of its side thick (at least 2 px): floor, away from the item.
    """
    height, width = rgb.shape[:2]
    rows = max(2, round(STRIP_FRACTION * height))
    cols = max(2, round(STRIP_FRACTION * width))
    return [
        rgb[:rows].copy(),
        rgb[-rows:][::-1].copy(),
        np.rot90(rgb[:, :cols], -1).copy(),
        np.rot90(rgb[:, -cols:], 1).copy(),
    ]


def floor_from_strip(
    strip: np.ndarray, size: tuple[int, int], rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    """Fill ``size`` (H, W) with ``strip`` enlarged ``scale`` times, tiled with mirror images
    (so no seam shows), shifted at random and turned by a random multiple of 90 degrees."""
    height, width = size
    turned = rng.integers(2) == 1  # tile a (W, H) canvas and turn it: stripes across either way
    target = (width, height) if turned else (height, width)
    new_w = max(2, round(strip.shape[1] * scale))
    new_h = max(2, round(strip.shape[0] * scale))
    tile = cv2.resize(strip, (new_w, new_h), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    reps = (target[0] // new_h + 3, target[1] // new_w + 3)
    mirrored = np.concatenate([tile, tile[::-1]], axis=0)
    mirrored = np.concatenate([mirrored, mirrored[:, ::-1]], axis=1)
    canvas = np.tile(mirrored, ((reps[0] + 1) // 2, (reps[1] + 1) // 2, 1))
    oy = int(rng.integers(canvas.shape[0] - target[0] + 1))
    ox = int(rng.integers(canvas.shape[1] - target[1] + 1))
    canvas = canvas[oy : oy + target[0], ox : ox + target[1]]
    if turned:
        canvas = np.rot90(canvas, 1 if rng.integers(2) else -1)
    return np.ascontiguousarray(canvas)


class Backgrounds:
    """Draws backgrounds of a given size: a floor patch (when floors were given) or a texture.

    ``floors``: photos of items on real floors (only the training split's, when training, so that
    the evaluation's floors never leak); ``floor_share``: how often a floor is drawn rather than a texture.
    """

    def __init__(self, floors: Sequence[np.ndarray] = (), floor_share: float = 0.5) -> None:
        self._strips = [(strip, photo.shape[:2]) for photo in floors for strip in floor_strips(photo)]
        self._floor_share = floor_share if self._strips else 0.0

    @property
    def n_floor_strips(self) -> int:
        return len(self._strips)

    def draw(self, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A uint8 RGB background of ``size`` (H, W)."""
        if rng.random() < self._floor_share:
            strip, photo_size = self._strips[rng.integers(len(self._strips))]
            # Keep the floor's grain about as coarse relative to the frame as in its own photo.
            scale = max(size) / max(photo_size) * rng.uniform(0.7, 1.3)
            return floor_from_strip(strip, size, rng, scale)
        return texture(size, rng)
