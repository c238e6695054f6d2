"""Keras model -> TFLite flatbuffer, with the TFLite converter's own quantisation options.

- ``float32``: no optimisation; the reference.
- ``float16``: weights stored as float16 (half the size), computed in float32 on a Pi's CPU.
- ``dynamic``: weights int8, activations float; no calibration data needed.
- ``int8``: full integer (``TFLITE_BUILTINS_INT8``) with uint8 input and output, calibrated on
  a representative sample of training frames. Because the model rescales pixels itself, the
  uint8 input tensor takes raw pixels (scale ~1, zero point 0).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

from smartbin.device.errors import SmartbinError
from smartbin.training.progress import bar

from . import QUANTIZATIONS

RepresentativeDataset = Callable[[], Iterator[list[np.ndarray]]]


def input_dtype(quantization: str) -> str:
    """The dtype of the converted model's input tensor (what the bundle's manifest records)."""
    return "uint8" if quantization == "int8" else "float32"


def representative_dataset(frames: np.ndarray) -> RepresentativeDataset:
    """Calibration input for the converter: each uint8 frame as a float32 batch of one (raw pixels)."""
    if len(frames) == 0:
        raise SmartbinError(
            "the representative set is empty: the run's train split has no images; "
            "check splits.csv or train again with more photos"
        )

    def generate() -> Iterator[list[np.ndarray]]:
        for frame in bar(frames, desc="calibrating int8"):
            yield [frame[np.newaxis].astype(np.float32)]

    return generate


def convert_keras(model, quantization: str, representative: RepresentativeDataset | None = None) -> bytes:
    """Convert a Keras 3 model (exported as a SavedModel first) to TFLite bytes."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise SmartbinError(
            f"unknown quantisation {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}"
        )
    if quantization == "int8" and representative is None:
        raise SmartbinError("int8 needs a representative dataset to calibrate on")
    with tempfile.TemporaryDirectory(prefix="smartbin-savedmodel-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        # The converter prints MLIR statistics on stdout; keep stdout for our report.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                return converter.convert()
            except Exception as exc:  # ConverterError and friends: many lines; keep the first
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SmartbinError(f"TFLite conversion ({quantization}) failed: {first}") from exc
