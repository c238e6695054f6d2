#!/usr/bin/env python3
"""Would averaging scores buy accuracy? Runs alone, with mirror images, and together, per photo set.

    python scripts/score_averaging.py RUN_DIR [RUN_DIR ...] [--mirror lr|lr+ud]

Scores each run's Keras model on the validation and test photos of the first run's split, and the same
with the scores averaged over the photo and its mirror images (test-time augmentation: 2 or 3 times the
inference on the bin) and over all the runs given (an ensemble: their size and time added up). Prints
accuracy and the number of wrong photos per photo set, so a gain can be counted in photos. Every run must
have the same labels and the same validation and test photos. Needs the ``[train]`` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from smartbin.converters.frames import load_frames
from smartbin.converters.run_dir import TrainingRun, load_keras_model, load_run
from smartbin.device.errors import SmartbinError

SPLITS = ("val", "test")
MIRRORS = {"lr": ((2,),), "lr+ud": ((2,), (1,))}  # axes of an (N, H, W, 3) batch to flip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--mirror", choices=sorted(MIRRORS), default="lr", help="mirror images to average")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(path) for path in args.run_dirs]
        _check_comparable(runs)
        first = runs[0]
        examples = [ex for split in SPLITS for ex in first.splits[split]]
        frames = {}
        for run in runs:
            if (run.height, run.width) not in frames:
                frames[run.height, run.width] = load_frames(examples, run.input_spec("uint8"))
    except SmartbinError as exc:
        print(f"score_averaging: error: {exc}", file=sys.stderr)
        return 1

    labels = np.array([first.label_index(ex.label) for ex in examples])
    split_of = np.array([split for split in SPLITS for _ in first.splits[split]])
    source_of = np.array([first.source_of(ex.path) or "?" for ex in examples])
    alone, mirrored = [], []
    for run in runs:
        model = load_keras_model(run)
        batch = frames[run.height, run.width].astype(np.float32)
        views = [model.predict(batch, verbose=0)]
        views += [model.predict(np.flip(batch, axes), verbose=0) for axes in MIRRORS[args.mirror]]
        alone.append(views[0])
        mirrored.append(np.mean(views, axis=0))
        _report(run.path.name, views[0], labels, split_of, source_of)
        _report(f"{run.path.name} + mirror {args.mirror}", mirrored[-1], labels, split_of, source_of)
    if len(runs) > 1:
        _report("all runs averaged", np.mean(alone, axis=0), labels, split_of, source_of)
        _report(f"all runs + mirror {args.mirror}", np.mean(mirrored, axis=0), labels, split_of, source_of)
    return 0


def _check_comparable(runs: list[TrainingRun]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.labels != first.labels:
            raise SmartbinError(
                f"{run.path} has labels {list(run.labels)}, {first.path} {list(first.labels)}"
            )
        for split in SPLITS:
            if {ex.path for ex in run.splits[split]} != {ex.path for ex in first.splits[split]}:
                raise SmartbinError(f"{run.path} and {first.path} have different {split} photos")


def _report(
    name: str, scores: np.ndarray, labels: np.ndarray, split_of: np.ndarray, source_of: np.ndarray
) -> None:
    right = scores.argmax(axis=1) == labels
    parts = []
    for split in SPLITS:
        figures = []
        for source in sorted(set(source_of)):
            chosen = (split_of == split) & (source_of == source)
            if chosen.any():
                wrong = int((~right[chosen]).sum())
                figures.append(f"{source} {100 * right[chosen].mean():.1f} % ({wrong} wrong)")
        parts.append(f"{split}: " + ", ".join(figures))
    print(f"{name}: " + "; ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
