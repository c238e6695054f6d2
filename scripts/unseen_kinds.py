"""Where a training run's Keras model would send photos of kinds it never saw, and its own test photos.

Hold a class out of training (train without ``trash``), then see where that class goes: the
thresholds are chosen on the run's validation photos as ``smartbin convert`` chooses them, and
every photo goes through the bin's decision with the default config::

    .venv/bin/python scripts/unseen_kinds.py RUN_DIR ../shared/datasets/trashnet-rest/trash [--max-wrong 1]

Each FOLDER is one kind (its name: the class); a kind the model has a label for counts as that
label, any other as general waste. Needs the [train] extra (the Keras model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from smartbin.converters import DEFAULT_MAX_WRONG, DEFAULT_MIN_KEPT_OUT
from smartbin.converters.outcomes import SortingTarget, compartment_of, format_outcomes, sorting_outcomes
from smartbin.converters.parity import keras_scores
from smartbin.converters.run_dir import load_keras_model, load_run
from smartbin.device.config import parse_config
from smartbin.device.hardware.cameras.folder import IMAGE_SUFFIXES
from smartbin.device.vision.classifier import resize_frame
from smartbin.device.vision.images import read_rgb


def frames(paths: list[Path], spec) -> np.ndarray:
    return np.stack([resize_frame(read_rgb(p), spec) for p in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("folders", type=Path, nargs="+", help="one folder of photos per kind")
    parser.add_argument("--max-wrong", type=float, default=100 * DEFAULT_MAX_WRONG, metavar="PERCENT")
    parser.add_argument("--min-kept-out", type=float, default=100 * DEFAULT_MIN_KEPT_OUT, metavar="PERCENT")
    args = parser.parse_args()
    run = load_run(args.run_dir)
    spec = run.input_spec("float32")
    model = load_keras_model(run)
    labels = tuple(run.labels)
    val = run.splits["val"]
    sorting = parse_config({}).sorting
    target = SortingTarget(args.max_wrong / 100, args.min_kept_out / 100)
    thresholds, _ = target.choose(
        keras_scores(model, frames([ex.path for ex in val], spec)), [ex.label for ex in val], labels, sorting
    )
    print("thresholds:", ", ".join(f"{label} {t:.2f}" for label, t in thresholds.items()))
    test = run.splits["test"]
    photos = [(ex.path, ex.label) for ex in test]
    for folder in args.folders:
        photos += [(p, folder.name) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    scores = keras_scores(model, frames([p for p, _ in photos], spec))
    went = [compartment_of(row, labels, sorting, thresholds) for row in scores]
    print(format_outcomes(sorting_outcomes(went, [kind for _, kind in photos], sorting)))


if __name__ == "__main__":
    main()
