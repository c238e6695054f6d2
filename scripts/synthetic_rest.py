"""Write a photo set of made-up general waste: blobs of food, cloth, wood and skin on a white board.

Outlier exposure: a model taught that such things are ``trash`` has seen more kinds of "not a can,
glass or plastic" than the TrashNet trash photos show, so kinds nobody photographed are more likely
to go to the rest compartment. Each photo is 512x384 like TrashNet's, a bright board lit unevenly,
with one irregular item: a procedural texture (wood, carpet, grass, tiles, stripes: wood scraps and
textiles), food-like mottled colours, or a skin-toned hand-sized blob, shaded and with a soft
shadow. The photos lie on a white board, so ``--paste-backgrounds`` pastes them onto floors as
it does every other board photo::

    .venv/bin/python scripts/synthetic_rest.py runs/data/synthetic-rest --count 300 [--seed 0]

writes ``OUT/trash/synthetic-NNNN.jpg``; train with OUT as one more photo set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from smartbin.training.backgrounds import texture

SIZE = (384, 512)  # TrashNet's photos, height x width
_FOOD = ((150, 90, 40), (200, 140, 60), (90, 130, 50), (220, 180, 120), (180, 60, 40), (240, 220, 170))
_SKIN = ((230, 190, 160), (200, 150, 115), (150, 100, 70), (100, 65, 45))


def smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: float) -> np.ndarray:
    grid = rng.normal(size=(max(2, round(cells * size[0] / size[1])), max(2, round(cells)))).astype(
        np.float32
    )
    return cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def board(rng: np.random.Generator) -> np.ndarray:
    """A white poster board under uneven light, as in TrashNet's photos."""
    h, w = SIZE
    base = rng.uniform(200, 245) * rng.uniform(0.97, 1.03, 3)
    light = 1.0 + 0.06 * smooth_noise(rng, SIZE, 2)
    return base[np.newaxis, np.newaxis, :] * light[..., np.newaxis] + rng.normal(0, 2, (h, w, 3))


def blob(rng: np.random.Generator) -> np.ndarray:
    """An irregular item mask (float 0..1, soft edge) covering 8-40 % of the photo."""
    h, w = SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    turn = rng.uniform(0, np.pi)
    u = ((x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)) / rx
    v = (-(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)) / ry
    field = 1.0 - np.sqrt(u**2 + v**2) + 0.35 * smooth_noise(rng, SIZE, rng.uniform(3, 8))
    mask = (field > 0).astype(np.uint8)
    count, parts, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count > 1:
        mask = (parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.2)


def surface(rng: np.random.Generator) -> np.ndarray:
    """What the item is made of: a texture, mottled food colours or skin, float RGB."""
    kind = rng.choice(["texture", "food", "skin"], p=[0.5, 0.35, 0.15])
    if kind == "texture":
        return texture(SIZE, rng).astype(np.float32)
    palette = _FOOD if kind == "food" else _SKIN
    a, b = (np.array(palette[i], dtype=np.float32) for i in rng.integers(len(palette), size=2))
    mix = np.clip(0.5 + 0.5 * smooth_noise(rng, SIZE, rng.uniform(3, 12)), 0, 1)[..., np.newaxis]
    image = a + (b - a) * mix
    if kind == "food":  # specks and seeds
        specks = rng.random(SIZE) < rng.uniform(0.0, 0.02)
        image[specks] *= rng.uniform(0.3, 0.7)
    return image


def photo(rng: np.random.Generator) -> np.ndarray:
    mask = blob(rng)
    shade = 1.0 + rng.uniform(0.1, 0.3) * smooth_noise(rng, SIZE, rng.uniform(2, 5))  # folds, curvature
    item = surface(rng) * shade[..., np.newaxis]
    dx, dy = rng.integers(4, 14, size=2)
    moved = cv2.warpAffine(mask, np.float32([[1, 0, dx], [0, 1, dy]]), (SIZE[1], SIZE[0]))  # no wrap-around
    shadow = cv2.GaussianBlur(moved, (0, 0), 8) * rng.uniform(0.2, 0.45)
    scene = board(rng) * (1.0 - shadow[..., np.newaxis])
    scene = scene * (1 - mask[..., np.newaxis]) + item * mask[..., np.newaxis]
    return np.clip(np.round(scene), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the photo set to write (OUT/trash/...)")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = args.out / "trash"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for n in range(args.count):
        rgb = photo(rng)
        cv2.imwrite(
            str(folder / f"synthetic-{n:04d}.jpg"),
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 90],
        )
    print(f"wrote {args.count} photos to {folder}")


if __name__ == "__main__":
    main()
