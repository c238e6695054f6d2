"""Cut items out of their white board and paste them onto other backgrounds (OpenCV and numpy).

TrashNet's photos show every item on a white poster board; drinking-waste shows cans and PET
bottles on real floors but no glass. Trained on both as they are, a model can learn "real floor,
so not glass". Pasting items of every class onto floors and textures breaks that shortcut, and
pasting test-split glass onto unseen floors measures whether it is broken.

The mask: the board's colour is modelled as a smooth (quadratic) field fitted to the photo's
border, pixels that differ from it in chroma or lightness seed GrabCut, the largest parts are kept
and their holes filled. The alpha is soft: feathered at the edge, and partly transparent where the
item looks like the board (clear glass), so the new background shows through; highlights stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .backgrounds import Backgrounds
from .progress import bar

#: The mask is found on a copy whose longer side is this many pixels (GrabCut's cost grows with area).
WORK_SIDE = 128
#: An item must cover this share of the photo, at least and at most, or its cut-out is not trusted.
MIN_AREA, MAX_AREA = 0.02, 0.8
#: At most this share of the photo's border may be item (items cut by the frame are fine, a full frame is not).
MAX_BORDER_CONTACT = 0.35
#: Where the item looks like the board (clear glass) its alpha falls to this, not to 0.
MIN_INNER_ALPHA = 0.55


@dataclass(frozen=True)
class Cutout:
    """An item cut out of a photo: its pixels, a soft alpha, and the size of the photo it came from."""

    rgb: np.ndarray  # (h, w, 3) uint8, the item's bounding box
    alpha: np.ndarray  # (h, w) float32 in 0..1
    frame: tuple[int, int]  # (H, W) of the photo


def _band(image: np.ndarray, width: int) -> np.ndarray:
    """Boolean mask of the outer ``width`` pixels of an image."""
    band = np.ones(image.shape[:2], bool)
    band[width:-width, width:-width] = False
    return band


def on_white_board(rgb: np.ndarray) -> bool:
    """True for a photo whose border is mostly bright and nearly grey (a white board or sheet)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    border = lab[_band(rgb, max(2, round(0.04 * min(rgb.shape[:2]))))]
    chroma = np.hypot(border[:, 1] - 128, border[:, 2] - 128)
    return bool(np.mean((border[:, 0] >= 140) & (chroma <= 20)) >= 0.6)


def _board_field(lab: np.ndarray, band: np.ndarray) -> np.ndarray:
    """The board's Lab colour at every pixel: a quadratic surface fitted to the border, twice
    (the second fit without the border pixels the first one explains worst, such as a cut-off item)."""
    height, width = lab.shape[:2]
    v, u = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    basis = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).astype(np.float32)
    x, y = basis[band], lab[band]
    keep = np.ones(len(y), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        error = np.abs(y - x @ coef).sum(axis=1)
        keep = error <= max(np.percentile(error, 75), 1.0) * 2
    return basis @ coef


def _difference(rgb: np.ndarray) -> np.ndarray:
    """How unlike the board each pixel is (about 0 on the board, 10 and more on an item)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    board = _board_field(lab, _band(rgb, max(2, round(0.03 * min(rgb.shape[:2])))))
    d = lab - board
    chroma = np.hypot(d[..., 1], d[..., 2])
    # Shadows on the board are darker but grey: lightness counts only well past them.
    return 2 * np.maximum(chroma - 5, 0) + np.maximum(-d[..., 0] - 22, 0) + np.maximum(d[..., 0] - 20, 0)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    return mask | (1 - outside[1:-1, 1:-1])


def _main_parts(mask: np.ndarray) -> np.ndarray:
    """The largest connected part and the parts at least 15 % of its size (a bottle and its cap)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.15 * areas.max())
    return np.isin(labels, keep).astype(np.uint8)


def item_mask(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The item of a photo on a white board: (hard mask uint8 0/1, difference map), both at a
    reduced size (:data:`WORK_SIDE`), or None when it is no such photo or no credible item is found."""
    if not on_white_board(rgb):
        return None
    height, width = rgb.shape[:2]
    factor = min(1.0, WORK_SIDE / max(height, width))
    small = cv2.resize(
        rgb, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    difference = _difference(small)
    seed = difference > 10
    if seed.mean() < MIN_AREA / 4:
        return None
    grab = np.full(seed.shape, cv2.GC_PR_BGD, np.uint8)
    grab[seed] = cv2.GC_PR_FGD
    grab[difference > 40] = cv2.GC_FGD
    grab[_band(small, 2) & (difference < 5)] = cv2.GC_BGD
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    try:
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), grab, None, *models, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # one of the two colour models has too few pixels to fit
        return None
    mask = np.isin(grab, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = _fill_holes(_main_parts(mask))
    border = mask[_band(mask, 1)]
    if not (MIN_AREA <= mask.mean() <= MAX_AREA) or border.mean() > MAX_BORDER_CONTACT:
        return None
    return mask, difference


def item_alpha(rgb: np.ndarray) -> np.ndarray | None:
    """A soft alpha (float32 0..1, the photo's size) of the item on a white board, or None."""
    found = item_mask(rgb)
    if found is None:
        return None
    mask, difference = found
    inner = np.clip(MIN_INNER_ALPHA + difference / 30.0, MIN_INNER_ALPHA, 1.0)
    inner = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 1.5)
    edge = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)
    alpha = cv2.resize(edge * inner, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0)


def cut_out(rgb: np.ndarray) -> Cutout | None:
    """The item of a photo on a white board with its alpha, cropped to it; None if none is found."""
    alpha = item_alpha(rgb)
    if alpha is None:
        return None
    rows = np.flatnonzero((alpha > 0.02).any(axis=1))
    cols = np.flatnonzero((alpha > 0.02).any(axis=0))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    return Cutout(rgb=rgb[box].copy(), alpha=alpha[box].copy(), frame=rgb.shape[:2])


def paste(
    cutout: Cutout,
    background: np.ndarray,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.6, 1.0),
    max_turn: float = 15.0,
    shadow: float = 0.7,
) -> np.ndarray:
    """``cutout`` composited onto ``background`` (uint8 RGB, the result's size).

    The item keeps its size relative to the frame times a random ``scale``, turns up to
    ``max_turn`` degrees, lands anywhere it fits, and with probability ``shadow`` casts a soft
    shadow. Where its alpha is 1 nothing of the background shows through.
    """
    height, width = background.shape[:2]
    fit = min(height / cutout.frame[0], width / cutout.frame[1])
    factor = fit * rng.uniform(*scale)
    h, w = cutout.alpha.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_turn, max_turn), factor)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ turn.T
    low, span = corners.min(axis=0), corners.max(axis=0) - corners.min(axis=0)
    shrink = min(1.0, (width - 1) / span[0], (height - 1) / span[1])  # a turned item must still fit
    turn *= shrink
    low, size = low * shrink, np.ceil(span * shrink).astype(int)
    x0 = int(rng.integers(0, max(1, width - size[0] + 1)))
    y0 = int(rng.integers(0, max(1, height - size[1] + 1)))
    turn[:, 2] += np.array([x0, y0]) - low  # place the turned item's box at (x0, y0) of the frame
    flags = dict(dsize=(width, height), flags=cv2.INTER_LINEAR)
    item = cv2.warpAffine(cutout.rgb, turn, borderMode=cv2.BORDER_REPLICATE, **flags)
    alpha = cv2.warpAffine(cutout.alpha, turn, borderMode=cv2.BORDER_CONSTANT, borderValue=0, **flags)
    out = background.astype(np.float32)
    if rng.random() < shadow:
        blur = max(1.0, 0.04 * max(size))
        shift = np.float32(
            [[1, 0, rng.uniform(-0.05, 0.05) * width], [0, 1, rng.uniform(0.0, 0.06) * height]]
        )
        shade = cv2.GaussianBlur(cv2.warpAffine(alpha, shift, (width, height)), (0, 0), blur)
        out *= (1.0 - rng.uniform(0.2, 0.5) * shade)[..., np.newaxis]
    a = alpha[..., np.newaxis]
    out = a * item.astype(np.float32) + (1.0 - a) * out
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class PasteAugment:
    """The training augmentation: with probability ``probability``, a photo on a white board becomes
    its item pasted onto a background drawn from ``backgrounds``.

    Every random choice comes from the seed given with each call, so a run is reproducible under its
    seed whatever order or thread the pipeline calls it in. Photos not on a white board (or whose
    item cannot be cut out) pass unchanged.
    """

    def __init__(self, images: Sequence[np.ndarray], probability: float, backgrounds: Backgrounds) -> None:
        self.probability = probability
        self.backgrounds = backgrounds
        self.cutouts = [cut_out(image) for image in bar(images, desc="cutting out items")]

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], probability: float) -> PasteAugment:
        """Cut out the items of the photos on a white board and take floors from all the others.

        Give it the training split only: its floors must not be the ones an evaluation shows.
        """
        floors = [image for image in images if not on_white_board(image)]
        return cls(images, probability, Backgrounds(floors))

    @property
    def n_cutouts(self) -> int:
        return sum(cutout is not None for cutout in self.cutouts)

    def __call__(self, image: np.ndarray, index: int, seed: int) -> np.ndarray:
        """Training photo number ``index`` (``image``), pasted with the probability, or as it is."""
        cutout = self.cutouts[int(index)]
        rng = np.random.default_rng(int(seed) % 2**64)  # tf.data's seeds are signed
        if cutout is None or rng.random() >= self.probability:
            return image
        return paste(cutout, self.backgrounds.draw(image.shape[:2], rng), rng)

    def fixed_copies(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, pasted images): one pasted copy of each photo picked with the probability, for
        a pipeline that sees every photo once (phase 1 on cached features)."""
        rng = np.random.default_rng(seed)
        picked, pasted = [], []
        for index, cutout in enumerate(self.cutouts):
            draw = np.random.default_rng(rng.integers(2**63))
            if cutout is None or draw.random() >= self.probability:
                continue
            size = cutout.frame
            picked.append(index)
            pasted.append(paste(cutout, self.backgrounds.draw(size, draw), draw))
        if not picked:
            return np.empty(0, np.int64), np.empty((0, 0, 0, 3), np.uint8)
        return np.array(picked, np.int64), np.stack(pasted)
