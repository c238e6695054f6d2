"""Run a bundle's model on RGB frames: preprocess, quantise, invoke, dequantise.

The bundle's manifest says how a frame becomes the model's input; the input and output
tensors' own quantisation parameters say how to cross between floats and integers, so the
same code serves float32, float16, dynamic-range and full-integer (uint8/int8) models.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from .bundle import Bundle, InputSpec
from .errors import BundleError
from .runtime import interpreter_class


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    scores: dict[str, float]


def resize_frame(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to the model's input size as the manifest says."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB frame, got shape {rgb.shape}")
    if spec.resize == "center_crop":
        h, w = rgb.shape[:2]
        target_ratio = spec.width / spec.height
        if w / h > target_ratio:
            new_w = round(h * target_ratio)
            x0 = (w - new_w) // 2
            rgb = rgb[:, x0 : x0 + new_w]
        else:
            new_h = round(w / target_ratio)
            y0 = (h - new_h) // 2
            rgb = rgb[y0 : y0 + new_h]
    if rgb.shape[:2] == (spec.height, spec.width):
        return rgb
    # Shrinking averages over each output pixel's area (no aliasing: a camera frame is 2-3 times
    # the model's input); enlarging interpolates.
    shrinking = rgb.shape[0] >= spec.height and rgb.shape[1] >= spec.width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (spec.width, spec.height), interpolation=interpolation)


def _quantize(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what the native runtime prints to fd 2 while it starts ("Created ... XNNPACK delegate")."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Classifier:
    """Owns one TFLite interpreter for one bundle. Not thread-safe: one caller at a time."""

    def __init__(self, bundle: Bundle, *, threads: int | None = None) -> None:
        self.bundle = bundle
        runtime_name, interpreter_cls = interpreter_class()
        self.runtime = runtime_name
        try:
            with _native_stderr_silenced():
                self._interpreter = interpreter_cls(model_path=str(bundle.model_path), num_threads=threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{bundle.path}: the model cannot be loaded ({first_line})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"{bundle.path}: expected one input and one output tensor")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(self._input["shape"])
        expected = (1, bundle.input.height, bundle.input.width, 3)
        if shape != expected:
            raise BundleError(f"{bundle.path}: model input shape {shape} does not match manifest {expected}")
        n_out = int(np.prod(self._output["shape"]))
        if n_out != len(bundle.labels):
            raise BundleError(
                f"{bundle.path}: model has {n_out} outputs but the manifest lists {len(bundle.labels)} labels"
            )
        self._outputs_logits = bundle.manifest.get("output", {}).get("kind") == "logits"

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Frame -> the exact tensor fed to the interpreter (batch of one)."""
        spec = self.bundle.input
        x = resize_frame(rgb, spec).astype(np.float32) * spec.scale + spec.offset
        dtype = self.input_dtype
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            if scale == 0:
                x = np.clip(np.round(x), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
            else:
                x = _quantize(x, dtype, scale, zero_point)
        else:
            x = x.astype(dtype)
        return x[np.newaxis]

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Class probabilities for one frame, in label order."""
        self._interpreter.set_tensor(self._input["index"], self.preprocess(rgb))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"]).reshape(-1)
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            out = (raw.astype(np.float32) - zero_point) * (scale or 1.0)
        else:
            out = raw.astype(np.float32)
        return _softmax(out) if self._outputs_logits else out

    def classify(self, rgb: np.ndarray) -> Prediction:
        return self.classify_frames([rgb])

    def classify_frames(self, frames: Sequence[np.ndarray]) -> Prediction:
        """Vote over several frames of one item by averaging their scores."""
        if not frames:
            raise ValueError("no frames to classify")
        mean = np.mean([self.scores(frame) for frame in frames], axis=0)
        best = int(np.argmax(mean))
        labels = self.bundle.labels
        return Prediction(
            label=labels[best],
            confidence=float(mean[best]),
            scores={label: float(s) for label, s in zip(labels, mean, strict=True)},
        )
