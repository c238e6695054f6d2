"""A tiny synthetic dataset and training run, for tests and smoke checks (no downloads, seconds on a CPU).

Each class has its own background colour (red-ish can, green-ish glass, blue-ish plastic) with a light
shape at a random place, so even the features of a randomly initialised network tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = {
    "can": ((200, 40, 40), "ellipse"),
    "glass": ((40, 170, 60), "rectangle"),
    "plastic": ((40, 70, 210), "triangle"),
}


def make_shapes_dataset(root: str | Path, per_class: int = 24, size: int = 48, seed: int = 0) -> Path:
    """Write ``root/<class>/<class>_<i>.png`` images and return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, (colour, shape) in SHAPES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            tint = np.array(colour) + rng.integers(-30, 31, size=3)
            background = (tint + rng.integers(-6, 7, size=(size, size, 3))).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(background)
            draw = ImageDraw.Draw(image)
            r = int(rng.integers(size // 6, size // 3))
            cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
            grey = int(rng.integers(180, 250))
            box = (cx - r, cy - r, cx + r, cy + r)
            if shape == "ellipse":
                draw.ellipse(box, fill=(grey, grey, grey))
            elif shape == "rectangle":
                draw.rectangle(box, fill=(grey, grey, grey))
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=(grey, grey, grey))
            image.save(root / label / f"{label}_{i:03d}.png")
    return root


def make_tiny_run(tmp_dir: str | Path, **overrides) -> Path:
    """Train a small random-weights model on a synthetic dataset; return its RUN_DIR (tmp_dir/run).

    The run dir has the full layout (model.keras, run.json, splits.csv, reports) with a 32x32 input.
    """
    from .train import TrainOptions, train

    tmp_dir = Path(tmp_dir)
    data_dir = make_shapes_dataset(tmp_dir / "data")
    options = dict(
        data_dirs=[data_dir],
        out=tmp_dir / "run",
        backbone="tiny_cnn",
        weights=None,
        input_size=(32, 32),
        batch_size=16,
        head_epochs=30,
        head_lr=1e-2,
        fine_tune_epochs=2,
        fine_tune_lr=1e-3,
        unfreeze=4,
        val_percent=20.0,
        test_percent=20.0,
        verbose=0,
    )
    options.update(overrides)
    return train(TrainOptions(**options))
