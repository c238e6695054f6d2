"""A tiny, real training run directory for the converter tests (built once per session).

Photos of three colours (can = red, glass = green, plastic = blue, with jitter and noise, in
several sizes and formats) and a small convolutional Keras model trained on them for a few
seconds: raw pixels in, Rescaling inside, softmax out, as ``smartbin train`` writes it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABELS = ("can", "glass", "plastic")
SIZE = 32
COLOURS = {"can": (200, 40, 40), "glass": (40, 180, 60), "plastic": (50, 70, 210)}
SPLIT_COUNTS = {"train": 12, "val": 3, "test": 5}


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, for the tests of the repository's scripts."""
    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def coloured_photo(label: str, rng: np.random.Generator) -> np.ndarray:
    """An RGB photo of one class: its colour, jittered, with noise and a darker blob."""
    h, w = int(rng.integers(36, 64)), int(rng.integers(36, 64))
    colour = np.array(COLOURS[label]) + rng.integers(-30, 31, size=3)
    image = np.clip(colour + rng.normal(0, 12, (h, w, 3)), 0, 255)
    cy, cx = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
    image[cy - 6 : cy + 6, cx - 6 : cx + 6] *= 0.6
    return image.astype(np.uint8)


def write_photo(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def make_dataset(root: Path, seed: int = 0) -> dict[str, list[tuple[Path, str]]]:
    """``root/<label>/*.{jpg,png}`` and the split each photo belongs to."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[Path, str]]] = {name: [] for name in SPLIT_COUNTS}
    for label in LABELS:
        n = 0
        for split, count in SPLIT_COUNTS.items():
            for _ in range(count):
                suffix = ".png" if n % 4 == 0 else ".jpg"
                path = write_photo(root / label / f"{label}{n:03d}{suffix}", coloured_photo(label, rng))
                splits[split].append((path.resolve(), label))
                n += 1
    return splits


def train_model(splits: dict[str, list[tuple[Path, str]]]):
    import keras

    from smartbin.device.vision.bundle import InputSpec
    from smartbin.device.vision.classifier import resize_frame
    from smartbin.training.images import load_rgb

    keras.utils.set_random_seed(0)
    spec = InputSpec(SIZE, SIZE)
    x = np.stack([resize_frame(load_rgb(p), spec) for p, _ in splits["train"]]).astype(np.float32)
    y = np.array([LABELS.index(label) for _, label in splits["train"]])
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu6")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=60, batch_size=12, verbose=0)
    return model


def write_run(run_dir: Path, model, splits, data_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    info = {
        "labels": list(LABELS),
        "input_size": [SIZE, SIZE],
        "resize": "stretch",
        "backbone": "tiny-cnn",
        "weights": "none",
        "seed": 0,
        "data_dir": str(data_dir.resolve()),
        "created": "2026-11-22T22:00:00+00:00",
        "metrics": {"test_accuracy": 1.0},
        "args": {"epochs": 60},
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    with open(run_dir / "splits.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for split, items in splits.items():
            writer.writerows([str(path), label, split] for path, label in items)
    return run_dir


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("photos")
    return root, make_dataset(root)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data) -> Path:
    """A run directory whose Keras model gets every tiny photo right."""
    data_dir, splits = tiny_data
    model = train_model(splits)
    return write_run(tmp_path_factory.mktemp("runs") / "tiny", model, splits, data_dir)


@pytest.fixture
def run_copy(tmp_path, tiny_run) -> Path:
    """A private copy of the tiny run to damage."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))
