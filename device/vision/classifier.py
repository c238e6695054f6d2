"""Run a bundle's model on RGB frames: preprocess, quantise, invoke, dequantise.

The bundle's manifest says how a frame becomes the model's input; the input and output
tensors' own quantisation parameters say how to cross between floats and integers, so the
same code serves float32, float16, dynamic-range and full-integer (uint8/int8) models.

A manifest can lie, and a lying one misclassifies everything in silence, so loading checks it
against the interpreter (input shape and dtype, whether pixels fit an integer input's
quantisation, one output per label) and then runs the model on a few very different synthetic
frames: the scores must differ between them, be finite, and be a probability distribution when
the manifest says they are one. Any mismatch is a :class:`BundleError` with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import BundleError, CameraError
from .bundle import Bundle, InputSpec
from .images import check_frame
from .native import native_stderr_silenced
from .runtime import interpreter_class

#: How far a "probabilities" output may be from summing to 1 (plus one quantisation step per class).
PROBABILITY_TOLERANCE = 0.02
#: An integer input must take at least this share of its levels from pixels 0..255 ...
MIN_LEVELS_USED = 0.25
#: ... and at least this share of pixels 0..255 must land inside its range (not clipped).
MIN_PIXELS_INSIDE = 0.8
_REBUILD = "rebuild the bundle with 'smartbin convert'"


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


class Classifier:
    """Owns one TFLite interpreter for one bundle. Not thread-safe: one caller at a time.

    ``verify=False`` skips the checks that catch a lying bundle (input dtype and quantisation,
    the test frames): the parity gate measures a fresh conversion as it is, then verifies it, and
    ``smartbin bundle import`` runs them with test frames and a remedy of its own (:meth:`verify`).
    """

    def __init__(self, bundle: Bundle, *, threads: int | None = None, verify: bool = True) -> None:
        self.bundle = bundle
        runtime_name, interpreter_cls = interpreter_class()
        self.runtime = runtime_name
        try:
            with native_stderr_silenced():
                self._interpreter = interpreter_cls(model_path=str(bundle.model_path), num_threads=threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.path}: the model cannot be loaded ({_first_line(exc)})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"{bundle.path}: expected one input and one output tensor")
        self._input, self._output = inputs[0], outputs[0]
        self._outputs_logits = bundle.output_kind == "logits"
        self._check_shapes()
        if verify:
            self.verify()

    def verify(self, frames: Sequence[np.ndarray] = (), *, remedy: str = _REBUILD) -> None:
        """The checks that catch a lying bundle: the manifest's input dtype and preprocessing against
        the input tensor, then the scores of :func:`probe_frames` and of ``frames``. Each refusal is a
        one-line :class:`BundleError` ending in ``remedy`` (what to do about it)."""
        self._check_input_fits(remedy)
        self._self_test([*probe_frames(self.bundle.input), *frames], remedy)

    def _check_shapes(self) -> None:
        """Refuse a manifest whose input size or label count is not the model's."""
        bundle, spec = self.bundle, self.bundle.input
        shape = tuple(int(n) for n in self._input["shape"])  # numpy ints would print as np.int32(1)
        expected = (1, spec.height, spec.width, 3)
        if shape != expected:
            raise BundleError(f"{bundle.path}: model input shape {shape} does not match manifest {expected}")
        n_out = int(np.prod(self._output["shape"]))
        if n_out != len(bundle.labels):
            raise BundleError(
                f"{bundle.path}: model has {n_out} outputs but the manifest lists {len(bundle.labels)} labels"
            )

    def _check_input_fits(self, remedy: str) -> None:
        """Refuse a manifest whose preprocessing does not make what the input tensor takes."""
        bundle, spec = self.bundle, self.bundle.input
        dtype = self.input_dtype
        if dtype.name != spec.dtype:
            raise BundleError(
                f"{bundle.path}: the manifest says input dtype {spec.dtype} but the model takes "
                f"{dtype.name}; {remedy}"
            )
        if np.issubdtype(dtype, np.integer):
            self._check_pixels_fit_integer_input(dtype, remedy)

    def _check_pixels_fit_integer_input(self, dtype: np.dtype, remedy: str) -> None:
        """Pixels 0..255 mapped by the manifest must spread over the input's integer levels.

        A manifest made for a float model (``scale`` 1/255) on a uint8 model crowds every pixel
        into one or two levels; a wrong offset pushes them past the end, where they are clipped.
        """
        spec = self.bundle.input
        scale, zero_point = _quantization(self._input)
        info = np.iinfo(dtype)
        low, high = sorted(x / scale + zero_point for x in (spec.offset, 255.0 * spec.scale + spec.offset))
        span, levels = high - low, float(info.max - info.min)
        inside = min(high, info.max) - max(low, info.min)
        if span < MIN_LEVELS_USED * levels or inside < MIN_PIXELS_INSIDE * span:
            raise BundleError(
                f"{self.bundle.path}: the manifest's preprocessing (pixel * {spec.scale:g} + {spec.offset:g}) "
                f"does not fit the model's {dtype.name} input (scale {scale:g}, zero point {zero_point}): "
                f"pixels 0..255 would become {low:.1f}..{high:.1f} of its {info.min}..{info.max}; {remedy}"
            )

    def _self_test(self, frames: Sequence[np.ndarray], remedy: str) -> None:
        """Run very different frames; refuse errors, constant scores and non-probabilities."""
        where = self.bundle.path
        try:
            results = [self.scores(frame) for frame in frames]
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{where}: the model cannot run an inference ({_first_line(exc)})") from None
        for scores in results:
            if not np.all(np.isfinite(scores)):
                raise BundleError(f"{where}: the model gives non-finite scores ({_format(scores)}); {remedy}")
        if np.ptp(np.stack(results), axis=0).max() <= 1e-6:
            raise BundleError(
                f"{where}: the model gives the same scores ({_format(results[0])}) for very different "
                f"frames, so it cannot tell items apart; {remedy}"
            )
        if self._outputs_logits:
            return
        for scores in results:
            if not self.are_probabilities(scores):
                raise BundleError(
                    f"{where}: the manifest says the model outputs probabilities, but it gives "
                    f"{_format(scores)} (sum {float(scores.sum()):.3g}); if they are logits, say so in the "
                    f'manifest ("output": {{"kind": "logits"}}), else {remedy}'
                )

    def are_probabilities(self, scores: np.ndarray) -> bool:
        """Whether one frame's scores are a distribution: none below 0 and a sum of 1, within
        :data:`PROBABILITY_TOLERANCE` plus one quantisation step per label of an integer output."""
        integer_output = np.issubdtype(np.dtype(self._output["dtype"]), np.integer)
        step = _quantization(self._output)[0] if integer_output else 0.0
        tolerance = PROBABILITY_TOLERANCE + len(self.bundle.labels) * step
        return bool(scores.min() >= -tolerance and abs(float(scores.sum()) - 1.0) <= tolerance)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Frame -> the exact tensor fed to the interpreter (batch of one)."""
        spec = self.bundle.input
        x = resize_frame(rgb, spec).astype(np.float32) * spec.scale + spec.offset
        dtype = self.input_dtype
        if np.issubdtype(dtype, np.integer):
            x = _quantize(x, dtype, *_quantization(self._input))
        else:
            x = x.astype(dtype)
        return x[np.newaxis]

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Class probabilities for one frame, in label order."""
        self._interpreter.set_tensor(self._input["index"], self.preprocess(rgb))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"]).reshape(-1)
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = _quantization(self._output)
            out = (raw.astype(np.float32) - zero_point) * scale
        else:
            out = raw.astype(np.float32)
        return _softmax(out) if self._outputs_logits else out

    def classify(self, rgb: np.ndarray) -> Prediction:
        return self.classify_frames([rgb])

    def classify_frames(self, frames: Sequence[np.ndarray]) -> Prediction:
        """Vote over several frames of one item by averaging their scores.

        Raises ValueError for a frame too small or too narrow to classify
        (:func:`smartbin.device.vision.images.check_frame`): a model would score it with confidence.
        """
        if not frames:
            raise ValueError("no frames to classify")
        for frame in frames:
            try:
                check_frame(frame, "frame")
            except CameraError as exc:
                raise ValueError(str(exc)) from None
        mean = np.mean([self.scores(frame) for frame in frames], axis=0)
        best = int(np.argmax(mean))
        labels = self.bundle.labels
        return Prediction(
            label=labels[best],
            confidence=float(mean[best]),
            scores={label: float(s) for label, s in zip(labels, mean, strict=True)},
        )


def probe_frames(spec: InputSpec) -> list[np.ndarray]:
    """Three very different frames of the model's input size: mid grey, warm and smooth, cool and noisy."""
    height, width = spec.height, spec.width
    ramp = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :].repeat(height, axis=0)
    noise = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    warm = np.stack([np.full_like(ramp, 230), ramp, np.full_like(ramp, 20)], axis=-1).astype(np.uint8)
    cool = np.stack([np.full_like(noise, 20), noise, np.full_like(noise, 230)], axis=-1)
    return [np.full((height, width, 3), 128, np.uint8), warm, cool]


def _quantization(tensor: dict) -> tuple[float, int]:
    """(scale, zero point) of a tensor; (1, 0) when it has none (integers are taken as they are)."""
    scale, zero_point = tensor["quantization"]
    return (float(scale), int(zero_point)) if scale else (1.0, 0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _format(scores: np.ndarray) -> str:
    return ", ".join(f"{float(x):.3g}" for x in scores)
