"""Benchmark the empty check and ``classifier.crop`` on composed chamber scenes.

Each scene is a background 640x480 (a procedural texture, or a floor from the drinking-waste
photos) as a camera in the chamber would see it: sensor noise, a global change of light and
white balance, and a shift of up to 2 px against the calibration. The reference is calibrated
from five noisy frames of the empty background, as ``smartbin calibrate`` does. Item scenes paste
a TrashNet item (cut out of its white board by training/cutpaste.py) onto the background first.

Reports how often an empty chamber is called empty, how often an item is called empty (per
class), the bundled default model's accuracy on the item scenes with the whole frame and with
the item's crop, and the empty check's time per frame::

    .venv/bin/python scripts/bench_empty.py [--scenes 60] [--items-per-class 30] [--seed 0]

Needs ../shared/datasets (trashnet3, drinking-waste); OpenCV and numpy only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.chamber import Reference, capture_fault, crop_box, median_frame
from smartbin.device.vision.classifier import Classifier
from smartbin.device.vision.images import read_rgb
from smartbin.device.vision.model import DEFAULT_MODEL
from smartbin.device.vision.settings import EmptyConfig
from smartbin.training.backgrounds import Backgrounds
from smartbin.training.cutpaste import cut_out, paste

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SIZE = (480, 640)  # the camera's default frame (height, width)
CLASSES = ("can", "glass", "plastic")


def camera_view(
    scene: np.ndarray, rng: np.random.Generator, *, noise: float, light: float, shift: float
) -> np.ndarray:
    """``scene`` as a camera frame: shifted, with a light/white-balance change and sensor noise."""
    dx, dy = rng.uniform(-shift, shift, 2)
    moved = cv2.warpAffine(
        scene, np.float32([[1, 0, dx], [0, 1, dy]]), scene.shape[1::-1], borderMode=cv2.BORDER_REFLECT
    )
    gain = rng.uniform(1 - light, 1 + light) * rng.uniform(0.97, 1.03, 3)
    out = moved.astype(np.float32) * gain.astype(np.float32) + rng.normal(0, noise, scene.shape).astype(
        np.float32
    )
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def calibrate(background: np.ndarray, rng: np.random.Generator, noise: float) -> Reference:
    frames = [camera_view(background, rng, noise=noise, light=0.0, shift=0.0) for _ in range(5)]
    return Reference(median_frame(frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenes", type=int, default=60, help="backgrounds (each: empty scenes and item scenes)"
    )
    parser.add_argument("--items-per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=4.0, help="sensor noise, std of 0-255 levels")
    parser.add_argument("--light", type=float, default=0.15, help="global light change, +-share")
    parser.add_argument("--shift", type=float, default=2.0, help="camera shift, +- pixels")
    parser.add_argument("--threshold", type=int, default=EmptyConfig().threshold, help="[empty] threshold")
    parser.add_argument("--min-area", type=float, default=EmptyConfig().min_area, help="[empty] min_area")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    config = EmptyConfig(threshold=args.threshold, min_area=args.min_area)

    cutouts: list[tuple[str, object]] = []
    for label in CLASSES:
        photos = sorted((SHARED / "trashnet3" / label).glob("*.jpg"))
        for path in rng.permutation(photos):
            if sum(c == label for c, _ in cutouts) >= args.items_per_class:
                break
            cut = cut_out(read_rgb(path))
            if cut is not None:
                cutouts.append((label, cut))
    floors = [read_rgb(p) for p in sorted((SHARED / "drinking-waste").rglob("*.jpg"))[::40]]
    backgrounds = Backgrounds(floors, floor_share=0.5)
    print(f"{len(cutouts)} items cut out ({Counter(c for c, _ in cutouts)}), {len(floors)} floor photos")

    classifier = Classifier(load_bundle(DEFAULT_MODEL), threads=2)
    empty_ok = empty_n = 0
    missed: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    right = {"off": Counter(), "item": Counter()}
    times = []
    for number in range(args.scenes):
        background = backgrounds.draw(SIZE, rng)
        reference = calibrate(background, rng, args.noise)
        view = {"noise": args.noise, "light": args.light, "shift": args.shift}
        for _ in range(3):
            frame = camera_view(background, rng, **view)
            start = time.perf_counter()
            fault = capture_fault(frame, None)
            change = reference.compare(frame, config.threshold)
            times.append((time.perf_counter() - start) * 1000)
            empty_n += 1
            empty_ok += fault is None and change.area < config.min_area
        for label, cut in (cutouts[i] for i in rng.choice(len(cutouts), 3, replace=False)):
            scene = paste(cut, background, rng, scale=(0.35, 0.8))
            frame = camera_view(scene, rng, **view)
            change = reference.compare(frame, config.threshold)
            shown[label] += 1
            if change.area < config.min_area:
                missed[label] += 1
                continue
            rows, cols = crop_box(change.box, frame.shape)
            for mode, image in (("off", frame), ("item", frame[rows, cols])):
                right[mode][label] += classifier.classify(image).label == label
        if number == 0:
            cv2.imwrite("/tmp/bench_empty_scene.jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    items = sum(shown.values())
    print(f"empty scenes called empty: {empty_ok}/{empty_n} ({empty_ok / empty_n:.1%})")
    print(
        f"item scenes called empty:  {sum(missed.values())}/{items} ({sum(missed.values()) / items:.1%}); "
        + ", ".join(f"{c} {missed[c]}/{shown[c]}" for c in CLASSES)
    )
    found = items - sum(missed.values())
    for mode in ("off", "item"):
        total = sum(right[mode].values())
        per = ", ".join(f"{c} {right[mode][c]}/{shown[c] - missed[c]}" for c in CLASSES)
        print(f"crop = {mode!r:6}: {total}/{found} right ({total / found:.1%}); {per}")
    print(
        f"empty check (capture checks + comparison) at 640x480: median {statistics.median(times):.2f} ms, "
        f"p95 {sorted(times)[int(0.95 * len(times))]:.2f} ms"
    )


if __name__ == "__main__":
    main()
