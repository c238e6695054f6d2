"""``smartbin bundle import``: a model trained elsewhere (Teachable Machine, Model Maker) -> verified bundle.

Everything the manifest needs is read from the ``.tflite`` file with the TFLite interpreter: the
input's size, dtype and quantisation, the number of outputs. An integer input takes the camera's
pixels one to one (its quantisation already says which floats they stand for); a float input has
no such record, so ``--input-range`` says where pixels 0..255 go (default -1..1, as Teachable
Machine trains). Whether the outputs are probabilities or logits is seen on test frames: the
sample photos, a black and a white frame and the classifier's own probe frames. The bundle is then
verified by the device's :class:`~smartbin.device.vision.classifier.Classifier` on all of them,
as a bin verifies it, and only then published.

It needs what a bin has (the ``[device]`` extra, no TensorFlow), so it also runs on the bin.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.config import Config
from smartbin.device.errors import BundleError, SmartbinError, os_error_reason
from smartbin.device.hardware.cameras import SAMPLES_DIR, list_images, read_rgb
from smartbin.device.vision.bundle import InputSpec, is_safe_name, load_bundle
from smartbin.device.vision.classifier import Classifier, probe_frames
from smartbin.device.vision.model import check_bundle_fits
from smartbin.device.vision.native import native_stderr_silenced
from smartbin.device.vision.runtime import interpreter_class

from .bundle_writer import write_bundle
from .convert import check_out

#: Input dtypes a bundle can feed (the classifier quantises frames for the integer ones).
INPUT_DTYPES = ("float32", "uint8", "int8")
OUTPUT_DTYPES = ("float32", "uint8", "int8")
#: Where pixels 0..255 go in a float model without ``--input-range``: Teachable Machine's (x / 127.5) - 1.
DEFAULT_FLOAT_RANGE = (-1.0, 1.0)
REMEDY = "check --input-range, or export the model again from where it was trained"

_TFLITE_ID = b"TFL3"  # the FlatBuffer file identifier, bytes 4-8 of every .tflite file
_ZIP_START = b"PK\x03\x04"
_INDEXED_LINE = re.compile(r"(\d+) (.*)")  # Teachable Machine: "0 can"


@dataclass(frozen=True)
class ModelInfo:
    """What the interpreter says about a model's tensors."""

    height: int
    width: int
    input_dtype: str
    input_scale: float  # of an integer input; (1, 0) when it has no quantisation
    input_zero_point: int
    outputs: int
    quantization: str  # "int8" (integer input), "float16", "dynamic" or "float32", as convert names them

    def integer_range(self) -> tuple[float, float]:
        """The floats an integer input's lowest and highest levels stand for."""
        info = np.iinfo(np.dtype(self.input_dtype))
        return tuple((q - self.input_zero_point) * self.input_scale for q in (info.min, info.max))


@dataclass(frozen=True)
class ImportResult:
    bundle: Path
    version: str
    size_bytes: int
    info: ModelInfo
    labels: tuple[str, ...]
    labels_format: str
    input_range: tuple[float, float]
    range_source: str  # "quantisation", "--input-range" or "default"
    output_kind: str
    sample_photos: int
    frames_checked: int  # the sample photos, black, white and the classifier's probe frames

    def summary(self) -> str:
        info, (low, high) = self.info, self.input_range
        if self.range_source == "quantisation":
            levels = "as they are" if info.input_dtype == "uint8" else "as -128..127"
            pixels = (
                f"pixels go in {levels} (scale {info.input_scale:g}, zero point {info.input_zero_point}: "
                f"the model reads {low:.3g}..{high:.3g})"
            )
        elif self.range_source == "default":
            pixels = (
                f"pixels scaled to {low:g}..{high:g} (the default for float models, as Teachable Machine "
                "trains them; a Model Maker float model usually wants --input-range 0 1)"
            )
        else:
            pixels = f"pixels scaled to {low:g}..{high:g} (--input-range)"
        if self.output_kind == "probabilities":
            outputs, scores = "probabilities (the model ends in a softmax)", " and sum to 1"
        else:
            outputs, scores = "logits (no softmax in the model: the bin applies one)", ""
        synthetic = self.frames_checked - self.sample_photos - 2
        return "\n".join(
            [
                f"input {info.height}x{info.width} {info.input_dtype}: {pixels}",
                f"output: {info.outputs} {outputs}",
                f"labels ({self.labels_format}): {', '.join(self.labels)}",
                f"checked on {self.frames_checked} test frames ({self.sample_photos} sample photos, black, "
                f"white, {synthetic} synthetic): the scores are finite, differ from frame to frame{scores}",
                f"wrote {self.bundle} (version {self.version}, {self.size_bytes:,} bytes)",
            ]
        )


def read_labels(path: Path) -> tuple[list[str], str]:
    """The labels in output order and the file's format: Teachable Machine's ``0 can`` lines, or
    plain names (Model Maker). Lines are indexed only when every line starts with its own index."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SmartbinError(f"{path}: not UTF-8 text; give the labels.txt exported with the model") from None
    except OSError as exc:
        raise SmartbinError(
            f"{path}: {os_error_reason(exc)}; give the labels.txt exported with the model"
        ) from None
    lines = text.splitlines()
    if not lines:
        raise SmartbinError(f"{path}: holds no labels; give the labels.txt exported with the model")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise SmartbinError(
                f"{path}: line {number} is empty; remove it (one label per line, in output order)"
            )
    matches = [_INDEXED_LINE.fullmatch(line.strip()) for line in lines]
    indexed = all(m and int(m[1]) == i for i, m in enumerate(matches))
    labels = [m[2].strip() for m in matches] if indexed else [line.strip() for line in lines]
    seen: dict[str, int] = {}
    for number, label in enumerate(labels, 1):
        if not label:
            raise SmartbinError(f"{path}: line {number} has an index but no name; give each label a name")
        if not label.isprintable():
            raise SmartbinError(f"{path}: line {number} holds a control character; use plain names")
        if label in seen:
            raise SmartbinError(
                f"{path}: label {label!r} is on lines {seen[label]} and {number}; each label must be unique"
            )
        seen[label] = number
    return labels, "Teachable Machine" if indexed else "plain names"


def read_model(path: Path) -> bytes:
    """The bytes of a ``.tflite`` file; a zip, a folder or another kind of file is refused in one line."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise SmartbinError(f"{path}: is a directory; give the .tflite file of the export") from None
    except OSError as exc:
        raise SmartbinError(f"{path}: {os_error_reason(exc)}; give the .tflite file of the export") from None
    if data.startswith(_ZIP_START):
        raise SmartbinError(
            f"{path}: a zip archive (Teachable Machine downloads one); unzip it and give the .tflite "
            "file and labels.txt inside"
        )
    if data[4:8] != _TFLITE_ID:
        raise SmartbinError(f"{path}: not a TensorFlow Lite model; give the .tflite file of the export")
    return data


def inspect_model(path: Path, model: bytes) -> ModelInfo:
    """Read the input and output tensors; refuse a model the bin cannot feed one RGB frame."""
    _, interpreter_cls = interpreter_class()
    try:
        with native_stderr_silenced():
            interpreter = interpreter_cls(model_content=model)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SmartbinError(
            f"{path}: TFLite cannot load it ({reason}); export a plain TensorFlow Lite model "
            "(floating point or quantized, not Edge TPU)"
        ) from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise SmartbinError(
            f"{path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "an image classifier has one of each"
        )
    shape = tuple(int(n) for n in inputs[0]["shape"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise SmartbinError(
            f"{path}: the model's input shape is {shape}, not one RGB image (1, height, width, 3); "
            "export an image classifier that takes one colour image"
        )
    if min(shape[1:3]) < 8:
        raise SmartbinError(
            f"{path}: the model's input is {shape[1]}x{shape[2]} pixels, too small for a photo"
        )
    input_dtype = np.dtype(inputs[0]["dtype"]).name
    output_dtype = np.dtype(outputs[0]["dtype"]).name
    if input_dtype not in INPUT_DTYPES or output_dtype not in OUTPUT_DTYPES:
        raise SmartbinError(
            f"{path}: the model takes {input_dtype} and gives {output_dtype}; smartbin feeds "
            f"{', '.join(INPUT_DTYPES)} inputs and reads {', '.join(OUTPUT_DTYPES)} outputs"
        )
    scale, zero_point = inputs[0]["quantization"]
    integer_input = input_dtype != "float32"
    return ModelInfo(
        height=shape[1],
        width=shape[2],
        input_dtype=input_dtype,
        input_scale=float(scale) if integer_input and scale else 1.0,
        input_zero_point=int(zero_point) if integer_input and scale else 0,
        outputs=int(np.prod(outputs[0]["shape"])),
        quantization="int8" if integer_input else _float_input_quantization(interpreter),
    )


def _float_input_quantization(interpreter: Any) -> str:
    dtypes = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    if "float16" in dtypes:
        return "float16"
    return "dynamic" if dtypes & {"int8", "uint8"} else "float32"


def choose_input(
    info: ModelInfo, input_range: tuple[float, float] | None, resize: str
) -> tuple[InputSpec, tuple[float, float], str]:
    """The manifest's preprocessing, the float range pixels 0..255 are mapped onto, and where it came from.

    Pixels go to ``low + pixel * (high - low) / 255``; for an integer input the classifier then
    quantises that with the tensor's own scale and zero point, so the quantisation's own range
    puts each pixel on one level of its own (uint8: the pixel itself).
    """
    if input_range is not None:
        low, high = input_range
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise SmartbinError(
                f"--input-range {low:g} {high:g}: give two finite numbers, the lowest first, such as "
                "--input-range -1 1, 0 1 or 0 255"
            )
        source = "--input-range"
    elif info.input_dtype == "float32":
        (low, high), source = DEFAULT_FLOAT_RANGE, "default"
    else:
        (low, high), source = info.integer_range(), "quantisation"
    spec = InputSpec(
        height=info.height,
        width=info.width,
        dtype=info.input_dtype,
        resize=resize,
        scale=(high - low) / 255.0,
        offset=low,
    )
    return spec, (low, high), source


def sample_frames() -> list[np.ndarray]:
    """The sample photos shipped with smartbin, then a black and a white frame."""
    frames = [read_rgb(path) for path in list_images(SAMPLES_DIR)]
    return [*frames, np.zeros((240, 320, 3), np.uint8), np.full((240, 320, 3), 255, np.uint8)]


def check_name(name: str) -> None:
    """Refuse a ``--name`` that cannot start a version (``<name>-<date>-<sha256[:8]>``), before any work."""
    if not is_safe_name(f"{name}-YYYYMMDD-01234567"):
        raise BundleError(
            f"name {name!r} cannot make a bundle version; use letters, digits, '.', '-' and '_' "
            "(at most 62 of them) and choose another --name"
        )


def import_model(
    model_path: str | Path,
    labels_path: str | Path,
    out: str | Path,
    *,
    input_range: tuple[float, float] | None = None,
    resize: str = "stretch",
    name: str | None = None,
) -> ImportResult:
    """Read, check on test frames and publish a bundle at ``out``; nothing is written on a refusal."""
    model_path, labels_path, out = Path(model_path), Path(labels_path), Path(out)
    if name is not None:
        check_name(name)
    check_out(out)
    labels, labels_format = read_labels(labels_path)
    model = read_model(model_path)
    info = inspect_model(model_path, model)
    if info.outputs != len(labels):
        raise SmartbinError(
            f"{labels_path} has {len(labels)} labels but {model_path.name} has {info.outputs} outputs; "
            "give the labels.txt exported with this model"
        )
    spec, used_range, range_source = choose_input(info, input_range, resize)
    frames = sample_frames()
    bundle_args: dict[str, Any] = {
        "name": name or f"imported-{info.quantization}",
        "labels": labels,
        "input_spec": spec,
        "quantization": info.quantization,
        "training": {
            "source": "imported",
            "file": model_path.name,
            "sha256": hashlib.sha256(model).hexdigest(),
            "labels_file": labels_path.name,
            "labels_format": labels_format,
            "input_range": list(used_range),
            "input_range_from": range_source,
        },
    }
    staging_root = Path(tempfile.mkdtemp(prefix="smartbin-import-"))
    try:
        staged = write_bundle(staging_root / "bundle", model, **bundle_args)
        version = load_bundle(staged).version
        with _blamed_on(model_path, staged):
            kind = _output_kind(staged, frames)
            staged = write_bundle(
                staging_root / "bundle", model, version=version, output_kind=kind, **bundle_args
            )
            Classifier(load_bundle(staged), verify=False).verify(frames, remedy=REMEDY)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    write_bundle(out, model, version=version, output_kind=kind, **bundle_args)
    return ImportResult(
        bundle=out,
        version=version,
        size_bytes=len(model),
        info=info,
        labels=tuple(labels),
        labels_format=labels_format,
        input_range=used_range,
        range_source=range_source,
        output_kind=kind,
        sample_photos=len(frames) - 2,
        frames_checked=len(probe_frames(spec)) + len(frames),
    )


def _output_kind(staged: Path, frames: Sequence[np.ndarray]) -> str:
    """``probabilities`` when the model's outputs are a distribution on every test frame (a softmax
    ends it), else ``logits``: the classifier then applies the softmax. ``staged`` says probabilities,
    so its classifier gives the outputs as they are."""
    classifier = Classifier(load_bundle(staged), verify=False)
    try:
        outputs = [classifier.scores(frame) for frame in [*probe_frames(classifier.bundle.input), *frames]]
    except (ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"{staged}: the model cannot run an inference ({reason})") from None
    return "probabilities" if all(classifier.are_probabilities(x) for x in outputs) else "logits"


@contextmanager
def _blamed_on(model_path: Path, staged: Path) -> Iterator[None]:
    """A refusal of the staged bundle names the model file the user gave, not a temporary folder."""
    try:
        yield
    except BundleError as exc:
        raise BundleError(f"{model_path}: {str(exc).removeprefix(f'{staged}: ')}") from None


def next_steps(bundle: Path, config: Config) -> str:
    """How to try the bundle and deploy it, and what the bin's config would say of its labels."""
    where = shlex.quote(str(bundle))
    lines = [
        f"next: smartbin classify PHOTO.jpg --model {where}   (try it on a photo)",
        f"      smartbin deploy {where} HOST   (put it on a bin)",
    ]
    try:
        check_bundle_fits(load_bundle(bundle), config)
    except BundleError as exc:
        config_name = config.source or "the built-in default config"
        reason = str(exc).removeprefix(f"{bundle}: ")
        lines.append(
            f"note: {config_name} would refuse this model: {reason}; map its labels to compartments "
            "in [sorting.labels] of the bin's config before deploying (docs/device.md#sorting)"
        )
    return "\n".join(lines)
