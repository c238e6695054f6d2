"""Turn listed image files into model-sized frames exactly as the bin does (decode, then resize).

Int8 calibration and the parity gate both read photos here, with the bin's own decoder
(:func:`smartbin.device.vision.images.decode_image`), the one training used too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smartbin.device.errors import SmartbinError
from smartbin.device.vision.bundle import InputSpec
from smartbin.device.vision.classifier import resize_frame
from smartbin.device.vision.images import decode_image
from smartbin.training.progress import bar

from .run_dir import Example, TrainingRun


def load_frames(examples: Sequence[Example], spec: InputSpec, what: str = "reading photos") -> np.ndarray:
    """Return uint8 frames of shape (N, H, W, 3), resized with the device's own code (``what``: the bar's name)."""
    missing = [ex.path for ex in examples if not ex.path.is_file()]
    if missing:
        raise SmartbinError(
            f"{len(missing)} image(s) listed in splits.csv are gone (first: {missing[0]}); "
            "run this where the training data is"
        )
    frames = np.empty((len(examples), spec.height, spec.width, 3), np.uint8)
    for i, ex in enumerate(bar(examples, desc=what)):
        frames[i] = resize_frame(decode_image(ex.path), spec)
    return frames


def sample_examples(run: TrainingRun, split: str, count: int, seed: int) -> list[Example]:
    """Up to ``count`` examples of ``split``, shuffled with ``seed`` and dealt out class by class.

    Dealing round-robin keeps every class in a small calibration sample, so an int8 model's
    activation ranges cover all classes, not just the biggest one.
    """
    rng = np.random.default_rng(seed)
    per_class = []
    for label in run.labels:
        items = sorted((ex for ex in run.splits[split] if ex.label == label), key=lambda ex: str(ex.path))
        per_class.append([items[i] for i in rng.permutation(len(items))])
    dealt = [ex for row in _zip_longest(per_class) for ex in row]
    return dealt[:count]


def _zip_longest(lists: list[list[Example]]) -> list[list[Example]]:
    longest = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(longest)]
