"""The parity gate: the converted model must classify held-out photos as well as the Keras model.

Both models see the very same resized frames; the TFLite model runs through the device's own
:class:`~smartbin.device.vision.classifier.Classifier` (manifest preprocessing, input quantisation,
output dequantisation), so a bundle whose manifest or quantisation is wrong fails here, not
on a bin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.errors import BundleError, SmartbinError
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.classifier import Classifier
from smartbin.training.progress import bar

KERAS_BATCH = 32


class ParityGateError(SmartbinError):
    """The converted model lost more accuracy than allowed; ``report`` holds the numbers."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParityReport:
    split: str
    images: int
    keras_accuracy: float
    tflite_accuracy: float
    agreement: float
    max_score_diff: float
    mean_score_diff: float
    runtime: str

    @property
    def drop_points(self) -> float:
        """Accuracy lost by conversion, in percentage points (negative when TFLite is better)."""
        lost_images = round(self.images * self.keras_accuracy) - round(self.images * self.tflite_accuracy)
        return 100.0 * lost_images / self.images

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop_points": round(self.drop_points, 3)}

    def summary(self) -> str:
        return (
            f"parity on {self.images} {self.split} images: keras {100 * self.keras_accuracy:.1f}%, "
            f"tflite {100 * self.tflite_accuracy:.1f}% (drop {self.drop_points:+.1f} points), "
            f"agreement {100 * self.agreement:.1f}%, max score diff {self.max_score_diff:.3f}"
        )

    def check(self, max_drop: float) -> None:
        """Raise :class:`ParityGateError` when TFLite accuracy is more than ``max_drop`` points lower."""
        if self.drop_points > max_drop + 1e-9:  # one image of 100 is a drop of exactly 1.0: allowed
            raise ParityGateError(
                f"parity gate failed: TFLite accuracy {100 * self.tflite_accuracy:.1f}% is "
                f"{self.drop_points:.1f} points below Keras {100 * self.keras_accuracy:.1f}% on "
                f"{self.images} {self.split} images (allowed: {max_drop:g}); the quantisation or the "
                "manifest's preprocessing is broken, so no bundle was written",
                self,
            )


def accuracy_by_source(
    keras: np.ndarray, tflite: np.ndarray, truth: np.ndarray, sources: list[str | None]
) -> dict[str, dict[str, Any]]:
    """Keras and TFLite accuracy on each photo set's share of the gate's images (photos of no known set
    are left out), so a run on several sets says how the bundle does on each."""
    by_source = {}
    for name in dict.fromkeys(s for s in sources if s is not None):
        mine = np.array([s == name for s in sources])
        by_source[name] = {
            "images": int(mine.sum()),
            "keras_accuracy": float(np.mean(keras[mine].argmax(axis=1) == truth[mine])),
            "tflite_accuracy": float(np.mean(tflite[mine].argmax(axis=1) == truth[mine])),
        }
    return by_source


def by_source_summary(by_source: dict[str, dict[str, Any]]) -> str:
    """``  trashnet3: keras 90.7%, tflite 90.1% (162 images)``, a line per set."""
    return "\n".join(
        f"  {name}: keras {100 * r['keras_accuracy']:.1f}%, tflite {100 * r['tflite_accuracy']:.1f}% "
        f"({r['images']} images)"
        for name, r in by_source.items()
    )


def keras_scores(model, frames: np.ndarray, batch_size: int = KERAS_BATCH) -> np.ndarray:
    """Scores of the Keras model for uint8 frames, predicted in batches (raw pixels as float32)."""
    out = [
        np.asarray(model.predict_on_batch(frames[i : i + batch_size].astype(np.float32)))
        for i in bar(range(0, len(frames), batch_size), desc="Keras scores", unit="batch")
    ]
    return np.concatenate(out).astype(np.float32)


def bundle_scores(
    bundle_path: str | Path, frames: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, str]:
    """Scores of a bundle's model, one frame at a time through the device's classifier.

    The bundle is measured as it is, lying or not (the gate's report says how far off it is);
    :func:`check_bin_accepts` then applies the checks a bin makes at load.
    """
    classifier = Classifier(load_bundle(bundle_path), threads=threads, verify=False)
    scores = [classifier.scores(frame) for frame in bar(frames, desc="TFLite scores")]
    return np.stack(scores), classifier.runtime


def check_bin_accepts(bundle_path: Path, threads: int | None = None) -> None:
    """Refuse a converted bundle that a bin would refuse to load (manifest that does not fit its
    model, constant or non-probability scores), even though it passed the parity gate."""
    try:
        Classifier(load_bundle(bundle_path), threads=threads)
    except BundleError as exc:
        reason = str(exc).removeprefix(f"{bundle_path}: ")
        raise SmartbinError(
            f"the converted model passed the parity gate but a bin would refuse it ({reason}); "
            "no bundle was written"
        ) from None


def compare(
    keras: np.ndarray, tflite: np.ndarray, truth: np.ndarray, *, split: str, runtime: str
) -> ParityReport:
    if len(truth) == 0:
        raise SmartbinError("no images to compare the models on")
    keras_top, tflite_top = keras.argmax(axis=1), tflite.argmax(axis=1)
    diff = np.abs(keras - tflite)
    return ParityReport(
        split=split,
        images=len(truth),
        keras_accuracy=float(np.mean(keras_top == truth)),
        tflite_accuracy=float(np.mean(tflite_top == truth)),
        agreement=float(np.mean(keras_top == tflite_top)),
        max_score_diff=float(diff.max()),
        mean_score_diff=float(diff.mean()),
        runtime=runtime,
    )
