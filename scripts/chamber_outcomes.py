"""Where items land in a bin-like chamber, through the real daemon (``smartbin simulate``).

Builds a chamber: a grey floor lit from above, seen by a camera with sensor noise, a small light
change and a shift of up to 2 px. The empty reference is calibrated from five frames of the empty
chamber (``smartbin calibrate``), then each photo's item, cut out of its white board
(training/cutpaste.py), is placed on the chamber floor and the lid closes once per item
(``smartbin simulate --fast --json``: the empty check, the item crop, the model, the thresholds
in force and the decision, as on a bin). Prints the sorting outcome (converters/outcomes.py)::

    .venv/bin/python scripts/chamber_outcomes.py BUNDLE RUN_DIR [--split test] [--seed 0]
    .venv/bin/python scripts/chamber_outcomes.py BUNDLE --photos SET [SET ...] [--per-class 40]

RUN_DIR's splits.csv gives the photos of one split (photos the model did not train on); --photos
takes folder-per-class sets instead (a class the model has no label for is a kind it never saw).
Photos whose item cannot be cut out of a white board are left out and counted. Needs the
[train] extra (OpenCV cut-outs); no TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from smartbin.converters.outcomes import format_outcomes, sorting_outcomes
from smartbin.device.config import parse_config
from smartbin.device.hardware.cameras.folder import IMAGE_SUFFIXES
from smartbin.device.vision.images import read_rgb
from smartbin.training.cutpaste import cut_out, paste

SIZE = (480, 640)  # the camera's default frame (height, width)


def chamber_floor(rng: np.random.Generator) -> np.ndarray:
    """A grey floor, brighter under the light in the middle, with a faint texture."""
    h, w = SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.35 * (((x - w / 2) / w) ** 2 + ((y - h / 2) / h) ** 2)
    grey = rng.uniform(100, 160) * light
    texture = cv2.GaussianBlur(rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), 2.0)
    tint = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    floor = (grey + texture)[..., None] * tint
    return np.clip(np.round(floor), 0, 255).astype(np.uint8)


def camera_view(
    scene: np.ndarray, rng: np.random.Generator, noise: float = 4.0, light: float = 0.08
) -> np.ndarray:
    dx, dy = rng.uniform(-2, 2, 2)
    moved = cv2.warpAffine(
        scene, np.float32([[1, 0, dx], [0, 1, dy]]), (SIZE[1], SIZE[0]), borderMode=cv2.BORDER_REFLECT
    )
    gain = np.float32(rng.uniform(1 - light, 1 + light))
    out = moved.astype(np.float32) * gain + rng.normal(0, noise, scene.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def photos_of_split(run_dir: Path, split: str) -> list[tuple[Path, str]]:
    with open(run_dir / "splits.csv", newline="", encoding="utf-8") as f:
        return [(Path(row["path"]), row["label"]) for row in csv.DictReader(f) if row["split"] == split]


def photos_of_sets(sets: list[Path], per_class: int, rng: np.random.Generator) -> list[tuple[Path, str]]:
    photos = []
    for root in sets:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            photos += [(files[i], folder.name) for i in sorted(rng.permutation(len(files))[:per_class])]
    return photos


def write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def smartbin(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("smartbin")), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("run_dir", type=Path, nargs="?", help="a training run: photos of its --split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--photos", type=Path, nargs="+", default=[], help="folder-per-class sets instead")
    parser.add_argument("--per-class", type=int, default=40, help="photos per class of --photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the chamber's frames and state here")
    args = parser.parse_args()
    if (args.run_dir is None) == (not args.photos):
        parser.error("give RUN_DIR or --photos")
    rng = np.random.default_rng(args.seed)
    photos = (
        photos_of_split(args.run_dir, args.split)
        if args.run_dir
        else photos_of_sets(args.photos, args.per_class, rng)
    )

    work = args.keep or Path(tempfile.mkdtemp(prefix="smartbin-chamber-"))
    floor = chamber_floor(rng)
    for i in range(5):
        write(work / "empty" / f"{i}.png", camera_view(floor, rng))
    uncut: Counter[str] = Counter()
    for n, (path, label) in enumerate(photos):
        cut = cut_out(read_rgb(path))
        if cut is None:
            uncut[label] += 1
            continue
        write(
            work / "items" / label / f"{n:05d}.png",
            camera_view(paste(cut, floor, rng, scale=(0.35, 0.8)), rng),
        )
    config = work / "config.toml"
    config.write_text(
        f"[camera]\nkind = 'folder'\nsource = '{work / 'empty'}'\n\n[paths]\nstate_dir = '{work / 'state'}'\n"
        "\n[classifier]\nframes = 1\n",
        encoding="utf-8",
    )
    smartbin("calibrate", "--config", str(config))
    out = smartbin(
        *(
            "simulate",
            "--config",
            str(config),
            "--state-dir",
            str(work / "state"),
            "--model",
            str(args.bundle),
        ),
        *("--images", str(work / "items"), "--fast", "--json"),
    )
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    went = [e["compartment"] or "none" for e in events]
    truth = [Path(e["image"]).parent.name for e in events]
    print(
        f"{len(events)} items in the chamber (seed {args.seed}); not cut out of their board: {dict(uncut) or 'none'}"
    )
    print(f"reasons: {dict(Counter(e['reason'] for e in events))}")
    print(format_outcomes(sorting_outcomes(went, truth, parse_config({}).sorting)))
    if args.keep is None:
        print(f"frames and state in {work}")


if __name__ == "__main__":
    main()
