"""The empty chamber: a reference picture of it, and what each item's frame changed.

``smartbin calibrate`` takes a few frames of the empty chamber with the lid closed and stores
their per-pixel median as the **empty reference** (:func:`save_reference`). For each item the
daemon asks :meth:`Chamber.look` two things about its frame:

- can the frame be trusted? A black, blown-out or frozen frame (bit-identical to the previous
  item's: a live camera's sensor noise never repeats) is a capture fault;
- did anything change? The frame is compared with the reference on a small copy
  (:data:`WORK_WIDTH` pixels wide, which also averages away sensor noise): each colour channel is
  scaled to the reference's level (the median ratio: a global change of light or gain), both go
  to Lab, and a pixel counts as changed only when it lies outside the reference's 3x3
  neighbourhood's range (a 1-2 px camera shift moves nothing). The changed pixels are blurred,
  thresholded, opened and closed; parts smaller than :data:`MIN_PART` are dropped. Nothing left,
  or less than ``[empty] min_area`` of the picture: the chamber is empty. Otherwise the box
  around the parts is the item's.

The reference follows slow drift (:meth:`Chamber.refresh`): a frame taken while the bin is idle
with its lid closed is blended in with a small weight, but only when it looks empty; a frame
with an item in it never is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import SmartbinError, os_error_reason
from ..hardware.settings import CameraConfig
from ..records.state import now_iso
from .settings import EmptyConfig

log = logging.getLogger(__name__)

REFERENCE_JSON = "empty-reference.json"  # names the image file beside it, and its sha256
WORK_WIDTH = 160  # frames are compared at this width (a 640x480 frame: 160x120)
MIN_PART = 0.001  # a changed part smaller than this share of the picture is noise
# How much a change of grain counts against one of colour: a 1-2 px shift of sharp lines (tile
# joints) changes the grain of the blocks they cross, which a colour change never does.
GRAIN_WEIGHT = 0.5
REFRESH_WEIGHT = 0.1  # how much of an idle empty frame goes into the reference
# An item's frame whose brightest 1 % is darker than this is black (no light, lens covered) ...
BLACK_P99 = 16
# ... and one with at least this share of pixels at 250 or more is blown out. Calibration wants
# better: a mean brightness of at least DARK_MEAN, and at most CLIPPED_SHARE of the picture
# clipped (nothing can be seen to change where a picture is white).
BLOWN_SHARE = 0.95
DARK_MEAN = 25
CLIPPED_SHARE = 0.2
CALIBRATION_FRAMES = 5  # frames a calibration takes: 'smartbin calibrate --frames' unless given
FRAME_GAP_S = 0.1  # between calibration frames of a live camera: something moving shows as unsteady
_KERNEL3 = np.ones((3, 3), np.uint8)
_KERNEL5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def frame_stats(rgb: np.ndarray) -> dict[str, float]:
    """Brightness of a frame (0-255): mean, 1st and 99th percentile, and the share clipped (>= 250)."""
    grey = luma(rgb)
    p1, p99 = np.percentile(grey[::2, ::2], (1, 99))
    return {
        "mean": round(float(grey.mean()), 2),
        "p1": float(p1),
        "p99": float(p99),
        "clipped": round(float(np.mean(grey >= 250)), 4),
    }


def capture_fault(rgb: np.ndarray, previous: np.ndarray | None) -> str | None:
    """``black``, ``blown`` or ``frozen`` (bit-identical to ``previous``), or None for a usable frame."""
    grey = luma(rgb)[::4, ::4]  # every 16th pixel tells black or white as well, in a tenth of the time
    if np.percentile(grey, 99) < BLACK_P99:
        return "black"
    if np.mean(grey >= 250) >= BLOWN_SHARE:
        return "blown"
    if previous is not None and previous.shape == rgb.shape and np.array_equal(previous, rgb):
        return "frozen"
    return None


FAULT_TEXT = {
    "black": "black frame (no light, or the lens covered)",
    "blown": "blown-out frame (too much light, or the exposure stuck)",
    "frozen": "frozen camera (the frame is bit-identical to the previous item's)",
}


@dataclass(frozen=True)
class Change:
    """What a frame changed: the share of the picture, and the box around it in the frame's
    pixels as (x, y, width, height), None when nothing did."""

    area: float
    box: tuple[int, int, int, int] | None


def _work_size(shape: tuple[int, ...]) -> tuple[int, int]:
    height, width = shape[:2]
    return WORK_WIDTH, max(8, round(height * WORK_WIDTH / width))


def _shrink(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame at the working size: its colours (each pixel the mean of its block of the frame),
    and its grain (the standard deviation of the lightness within the block). Fine stripes and a
    plain item of the same mean colour differ in grain only."""
    size = _work_size(rgb.shape)
    grey = luma(rgb).astype(np.float32)
    mean = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    square = cv2.resize(grey * grey, size, interpolation=cv2.INTER_AREA)
    grain = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32), grain


class Reference:
    """The empty chamber, ready to compare frames with; built from an RGB frame of the camera's size."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.shape = rgb.shape
        self._small, self._grain = _shrink(rgb)
        self._prepare()

    def _prepare(self) -> None:
        lab = cv2.cvtColor(np.round(self._small).astype(np.uint8), cv2.COLOR_RGB2LAB)
        self._low = cv2.erode(lab, _KERNEL3)
        self._high = cv2.dilate(lab, _KERNEL3)
        self._grain_low = cv2.erode(self._grain, _KERNEL3)
        self._grain_high = cv2.dilate(self._grain, _KERNEL3)
        self._level = np.median(self._small[::2, ::2].reshape(-1, 3), axis=0) + 1.0

    def measure(self, rgb: np.ndarray, threshold: int) -> tuple[Change, tuple[np.ndarray, np.ndarray]]:
        """What ``rgb`` (the reference's size) changed at a per-pixel ``threshold``, and the
        frame at the working size (what :meth:`blend` takes)."""
        small, grain = shrunk = _shrink(rgb)
        gain = (self._level / (np.median(small[::2, ::2].reshape(-1, 3), axis=0) + 1.0)).astype(np.float32)
        lab = cv2.cvtColor(cv2.convertScaleAbs(small * gain), cv2.COLOR_RGB2LAB)
        outside = cv2.max(cv2.subtract(lab, self._high), cv2.subtract(self._low, lab))
        lightness, a, b = cv2.split(outside)
        chroma = cv2.max(a, b)
        # grain beyond the reference's range, less what the whole frame gained (more sensor noise)
        grain = grain * float(gain.mean())
        grain -= float(np.median(grain[::2, ::2] - self._grain[::2, ::2]))
        grain_change = np.maximum(np.maximum(grain - self._grain_high, self._grain_low - grain), 0.0)
        difference = cv2.add(
            cv2.add(lightness, cv2.add(chroma, chroma)), cv2.convertScaleAbs(grain_change, alpha=GRAIN_WEIGHT)
        )
        return self._change(difference, threshold, rgb.shape), shrunk

    def compare(self, rgb: np.ndarray, threshold: int) -> Change:
        return self.measure(rgb, threshold)[0]

    def _change(self, difference: np.ndarray, threshold: int, shape: tuple[int, ...]) -> Change:
        blurred = cv2.GaussianBlur(difference, (3, 3), 0)
        mask = (blurred > threshold).astype(np.uint8)
        mask[[0, -1], :] = mask[:, [0, -1]] = 0  # where a shifted camera sees what the reference never did
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _KERNEL3)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _KERNEL5)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        parts = [s for s in stats[1:count] if s[cv2.CC_STAT_AREA] >= MIN_PART * mask.size]
        if not parts:
            return Change(0.0, None)
        x0 = min(s[cv2.CC_STAT_LEFT] for s in parts)
        y0 = min(s[cv2.CC_STAT_TOP] for s in parts)
        x1 = max(s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH] for s in parts)
        y1 = max(s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT] for s in parts)
        fx, fy = shape[1] / mask.shape[1], shape[0] / mask.shape[0]
        box = (int(x0 * fx), int(y0 * fy), round((x1 - x0) * fx), round((y1 - y0) * fy))
        return Change(float(sum(s[cv2.CC_STAT_AREA] for s in parts)) / mask.size, box)

    def blend(self, shrunk: tuple[np.ndarray, np.ndarray], weight: float) -> None:
        """Move the reference ``weight`` of the way towards a frame at the working size."""
        small, grain = shrunk
        self._small = (1.0 - weight) * self._small + weight * small
        self._grain = (1.0 - weight) * self._grain + weight * grain
        self._prepare()

    def image(self) -> np.ndarray:
        """The reference at the working size, RGB uint8 (for tests and the benchmark)."""
        return np.round(self._small).astype(np.uint8)


@dataclass(frozen=True)
class Look:
    """What the chamber check says about an item's frame."""

    fault: str | None = None  # black, blown, frozen: the frame cannot be trusted
    empty: bool = False
    change: Change | None = None  # None: no reference to compare with

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        return self.change.box if self.change is not None else None


# --- the reference on disk ----------------------------------------------------------------


def reference_path(state_dir: Path) -> Path:
    return state_dir / REFERENCE_JSON


def camera_settings(camera: CameraConfig) -> dict[str, Any]:
    """What a reference depends on: the camera kind, size and controls (a folder camera: its kind only)."""
    if camera.kind == "folder":
        return {"kind": camera.kind}
    return {
        "kind": camera.kind,
        "width": camera.width,
        "height": camera.height,
        "controls": {k: list(v) if isinstance(v, tuple) else v for k, v in camera.controls.items()},
    }


def median_frame(frames: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(frames), axis=0).round().astype(np.uint8)


def check_calibration_frames(frames: list[np.ndarray], threshold: int, min_area: float) -> dict[str, Any]:
    """The reference's stats, or :class:`SmartbinError` when the frames are too dark, blown out
    or unsteady (differ from one another), saying which and what to do."""
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        sizes = ", ".join(sorted(f"{s[1]}x{s[0]}" for s in shapes))
        raise SmartbinError(f"the calibration frames differ in size ({sizes}); the camera must keep one size")
    for number, frame in enumerate(frames, 1):
        stats = frame_stats(frame)
        if stats["mean"] < DARK_MEAN:
            raise SmartbinError(
                f"frame {number} is too dark (mean brightness {stats['mean']:.0f} of 255, at least "
                f"{DARK_MEAN} needed); close the lid, switch the chamber's light on ([light] pin) and calibrate again"
            )
        if stats["clipped"] > CLIPPED_SHARE:
            raise SmartbinError(
                f"frame {number} is blown out ({stats['clipped']:.0%} of it white, at most {CLIPPED_SHARE:.0%} "
                "allowed); lower the light or the exposure and calibrate again"
            )
    median = median_frame(frames)
    reference = Reference(median)
    moved = [reference.compare(frame, threshold).area for frame in frames]
    worst = int(np.argmax(moved))
    if moved[worst] >= min_area:
        raise SmartbinError(
            f"the frames are unsteady: frame {worst + 1} differs from the others in {moved[worst]:.1%} "
            f"of the picture (under {min_area:.1%} needed); keep the lid closed, the chamber empty "
            "and the bin still, and calibrate again"
        )
    return frame_stats(median) | {"unsteadiness": round(max(moved), 5)}


def take_frames(
    capture: Callable[[], np.ndarray], count: int, *, live: bool, settle_s: float
) -> list[np.ndarray]:
    """``count`` frames for a calibration from an open camera's ``capture``, the light already on:
    a live camera gets ``settle_s`` first and :data:`FRAME_GAP_S` between frames."""
    if live:
        time.sleep(settle_s)
    frames = []
    for _ in range(count):
        frames.append(capture())
        if live:
            time.sleep(FRAME_GAP_S)
    return frames


def save_reference(
    state_dir: Path, frames: list[np.ndarray], camera: CameraConfig, config: EmptyConfig
) -> Path:
    """Check ``frames`` and store their median as the empty reference; returns the JSON's path.

    The image is written under a new name, then the JSON that names it replaces the old JSON in
    one rename: a reader sees the old reference or the new one, never half of either.
    """
    stats = check_calibration_frames(frames, config.threshold, config.min_area)
    median = median_frame(frames)
    state_dir.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(median, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SmartbinError("cannot encode the reference image as PNG")
    data = png.tobytes()
    digest = hashlib.sha256(data).hexdigest()
    image = state_dir / f"empty-reference-{digest[:12]}.png"
    meta = {
        "taken": now_iso(),
        "image": image.name,
        "sha256": digest,
        "camera": camera_settings(camera),
        "frame": {"width": median.shape[1], "height": median.shape[0]},
        "frames": len(frames),
        "stats": stats,
    }
    path = reference_path(state_dir)
    old = _named_image(path)
    _write_atomic(image, data)
    _write_atomic(path, (json.dumps(meta, indent=1) + "\n").encode())
    if old is not None and old != image:
        old.unlink(missing_ok=True)
    return path


def _named_image(path: Path) -> Path | None:
    try:
        name = json.loads(path.read_text(encoding="utf-8"))["image"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path.parent / name if isinstance(name, str) and "/" not in name else None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_reference(state_dir: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """(the reference image as RGB, its JSON), None when none is set; :class:`SmartbinError` (one
    line: what is wrong, what to do) when it cannot be used."""
    path = reference_path(state_dir)
    again = "run 'smartbin calibrate' with the lid closed and the chamber empty"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_error_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
        raise SmartbinError(f"cannot read the empty reference {path}: {reason}; {again}") from None
    try:
        meta = json.loads(text)
        image = path.parent / meta["image"]
        digest = meta["sha256"]
        width, height = int(meta["frame"]["width"]), int(meta["frame"]["height"])
        if "/" in meta["image"] or not isinstance(meta["camera"], dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise SmartbinError(f"the empty reference {path} is corrupt (not its JSON); {again}") from None
    try:
        data = image.read_bytes()
    except OSError as exc:
        raise SmartbinError(
            f"cannot read the empty reference image {image}: {os_error_reason(exc)}; {again}"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise SmartbinError(f"the empty reference image {image} is corrupt (its checksum fails); {again}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise SmartbinError(
            f"the empty reference image {image} is corrupt (not a {width}x{height} image); {again}"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), meta


# --- the daemon's side --------------------------------------------------------------------


class Chamber:
    """The daemon's empty check: the reference (when one is set and usable), the capture checks,
    the idle refresh. Never raises: a reference that cannot be used is a warning, and the bin
    sorts as it would without one."""

    def __init__(self, state_dir: Path, config: EmptyConfig, camera: CameraConfig) -> None:
        self.config = config
        self.path = reference_path(state_dir)
        self.reference: Reference | None = None
        self.meta: dict[str, Any] | None = None
        self.problem: str | None = None  # why a reference that is there is not used
        self.refreshed = 0
        self.not_empty_at_idle = 0  # idle frames that did not look empty (an item left? the camera moved?)
        self._previous: np.ndarray | None = None  # the previous item's frame
        try:
            found = load_reference(state_dir)
        except SmartbinError as exc:
            self._give_up(str(exc))
            return
        if found is None:
            return
        image, meta = found
        settings = camera_settings(camera)
        if meta["camera"] != settings:
            self._give_up(
                f"the empty reference was taken with camera {_describe(meta['camera'])}, the config now "
                f"says {_describe(settings)}; run 'smartbin calibrate' again"
            )
            return
        self.reference, self.meta = Reference(image), meta

    def _give_up(self, why: str) -> None:
        self.reference = None
        self.problem = why
        log.warning("NOT CHECKING FOR AN EMPTY CHAMBER (the bin sorts as without a reference): %s", why)

    def look(self, frame: np.ndarray) -> Look | None:
        """The capture checks and the comparison for an item's frame; None without a reference."""
        if self.reference is None:
            return None
        previous, self._previous = self._previous, frame
        fault = capture_fault(frame, previous)
        if fault is not None:
            return Look(fault=fault)
        if frame.shape != self.reference.shape:
            ref = self.reference.shape
            self._give_up(
                f"the empty reference is {ref[1]}x{ref[0]} but the camera gives {frame.shape[1]}x{frame.shape[0]} "
                "frames; run 'smartbin calibrate' again"
            )
            return None
        change = self.reference.compare(frame, self.config.threshold)
        return Look(empty=change.area < self.config.min_area, change=change)

    def refresh(self, frame: np.ndarray) -> bool:
        """Blend an idle frame (lid closed, no item) into the reference if it looks empty."""
        if self.reference is None or frame.shape != self.reference.shape or capture_fault(frame, None):
            return False
        change, shrunk = self.reference.measure(frame, self.config.threshold)
        if change.area >= self.config.min_area:
            self.not_empty_at_idle += 1
            return False
        self.reference.blend(shrunk, REFRESH_WEIGHT)
        self.refreshed += 1
        self.not_empty_at_idle = 0
        return True

    def status(self) -> dict[str, Any]:
        return {
            "set": self.reference is not None,
            "path": str(self.path),
            "taken": self.meta["taken"] if self.meta else None,
            "refreshed": self.refreshed,
            "not_empty_at_idle": self.not_empty_at_idle,
            "problem": self.problem,
        }

    def warnings(self) -> list[str]:
        if self.problem:
            return [f"no empty check: {self.problem}"]
        if self.not_empty_at_idle >= 3:
            return [
                f"the chamber did not look empty at the last {self.not_empty_at_idle} idle checks: "
                "is an item stuck (take it out), or did the camera or the light change ('smartbin calibrate' again)?"
            ]
        return []


def _describe(settings: dict[str, Any]) -> str:
    if "width" in settings:
        return f"{settings['kind']} {settings['width']}x{settings['height']} controls {settings.get('controls') or {}}"
    return str(settings.get("kind"))


def crop_box(
    box: tuple[int, int, int, int], shape: tuple[int, ...], margin: float = 0.15
) -> tuple[slice, slice]:
    """The item's box grown by ``margin`` of its size each way and towards a square (the model's
    input is square), kept inside the frame: (rows, columns)."""
    height, width = shape[:2]
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    crop_w, crop_h = round(min(side, width)), round(min(side, height))
    x0 = round(min(max(x + w / 2 - crop_w / 2, 0), width - crop_w))
    y0 = round(min(max(y + h / 2 - crop_h / 2, 0), height - crop_h))
    return slice(y0, y0 + crop_h), slice(x0, x0 + crop_w)
