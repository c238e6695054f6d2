"""The model bundle: the contract between converters, deploy and the device.

A bundle is a directory::

    manifest.json   what the device needs to run the model (see docs/conversion.md)
    model.tflite    the model; its sha256 is in the manifest
    labels.txt      one label per line, in output order (for people; the manifest is authoritative)

:func:`load_bundle` checks everything that can be checked without running the model;
:class:`smartbin.device.vision.classifier.Classifier` then proves it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError, os_error_reason
from ..files import dir_problem

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
FORMAT_VERSION = 1
RESIZE_MODES = ("stretch", "center_crop")
INPUT_DTYPES = ("float32", "float16", "uint8", "int8")
#: ``probabilities``: the model ends in a softmax; ``logits``: the classifier applies one.
OUTPUT_KINDS = ("probabilities", "logits")

# Versions become directory names on a bin and arguments of remote commands:
# letters, digits, dot, dash and underscore only, no leading dot or dash.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def is_safe_name(name: str) -> bool:
    """True when ``name`` can be used as a version or file name anywhere, shells included."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputSpec:
    """What the model's input tensor expects, before quantisation.

    A frame is resized to ``height`` x ``width`` (``resize`` says how), converted to float32
    and mapped with ``pixel * scale + offset``; the classifier then quantises it with the
    input tensor's own parameters when the tensor is integer.
    """

    height: int
    width: int
    dtype: str = "float32"
    resize: str = "stretch"
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Bundle:
    path: Path
    name: str
    version: str
    labels: tuple[str, ...]
    input: InputSpec
    model_file: str
    sha256: str
    quantization: str
    output_kind: str
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file


def _require(manifest: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in manifest:
        raise BundleError(f"{where}: manifest has no '{key}'; rebuild the bundle with 'smartbin convert'")
    value = manifest[key]
    if not isinstance(value, kind):
        raise BundleError(f"{where}: manifest '{key}' should be {kind.__name__}, got {value!r}")
    return value


def _parse_input(raw: dict[str, Any], where: Path) -> InputSpec:
    try:
        spec = InputSpec(
            height=int(raw["height"]),
            width=int(raw["width"]),
            dtype=str(raw.get("dtype", "float32")),
            resize=str(raw.get("resize", "stretch")),
            scale=float(raw.get("scale", 1.0)),
            offset=float(raw.get("offset", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: manifest 'input' is malformed ({exc!r})") from None
    if spec.resize not in RESIZE_MODES:
        raise BundleError(f"{where}: unknown resize mode {spec.resize!r}; expected one of {RESIZE_MODES}")
    if spec.height < 8 or spec.width < 8:
        raise BundleError(f"{where}: input size {spec.height}x{spec.width} is too small")
    if spec.dtype not in INPUT_DTYPES:
        raise BundleError(f"{where}: unknown input dtype {spec.dtype!r}; expected one of {INPUT_DTYPES}")
    # pixel * scale + offset must give finite float32 numbers, and different pixels different ones
    brightest = 255.0 * spec.scale + spec.offset
    if not all(math.isfinite(x) and abs(x) < 3e38 for x in (spec.scale, spec.offset, brightest)):
        raise BundleError(
            f"{where}: manifest input scale {spec.scale:g} and offset {spec.offset:g} do not map pixels "
            "to finite numbers; rebuild the bundle with 'smartbin convert'"
        )
    if spec.scale == 0:
        raise BundleError(
            f"{where}: manifest input scale is 0, which maps every pixel to the same value; "
            "rebuild the bundle with 'smartbin convert'"
        )
    return spec


def _parse_output_kind(manifest: dict[str, Any], where: Path) -> str:
    output = manifest.get("output", {})
    kind = output.get("kind", "probabilities") if isinstance(output, dict) else None
    if kind not in OUTPUT_KINDS:
        raise BundleError(f"{where}: manifest 'output' kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    return kind


def _check_thresholds(manifest: dict[str, Any], labels: list[str], where: Path) -> None:
    """``sorting.thresholds``, when given, maps labels of this model to confidences 0-1."""
    sorting = manifest.get("sorting", {})
    thresholds = sorting.get("thresholds", {}) if isinstance(sorting, dict) else None
    if not isinstance(thresholds, dict):
        raise BundleError(
            f"{where}: manifest 'sorting' should hold a 'thresholds' object of label: confidence"
        )
    for label, value in thresholds.items():
        if label not in labels:
            raise BundleError(f"{where}: manifest 'sorting.thresholds' names {label!r}, which is not a label")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise BundleError(
                f"{where}: manifest 'sorting.thresholds' gives {label!r} {value!r}; expected a confidence 0-1"
            )


def load_bundle(path: str | Path, *, verify_checksum: bool = True) -> Bundle:
    """Read and check a bundle directory; raise :class:`BundleError` with one line if it is unusable."""
    path = Path(path)
    problem = dir_problem(path)
    if problem == "no such folder":
        raise BundleError(f"{path}: no such model bundle")
    if problem and path.is_file():
        raise BundleError(f"{path}: a model bundle is a directory with {MANIFEST_NAME} and a .tflite file")
    if problem:
        raise BundleError(f"{path}: {problem}; give a model bundle directory")
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: no {MANIFEST_NAME}; is this a model bundle?") from None
    except OSError as exc:
        raise BundleError(f"{manifest_path}: {os_error_reason(exc)}; copy the bundle again") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc}); copy the bundle again") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: manifest is not a JSON object")

    fmt = manifest.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {fmt!r} is not supported (this smartbin reads {FORMAT_VERSION})"
        )
    labels = _require(manifest, "labels", list, path)
    if not labels or not all(isinstance(x, str) and x and x.isprintable() for x in labels):
        raise BundleError(
            f"{path}: manifest 'labels' must be a non-empty list of names without control characters"
        )
    if len(set(labels)) != len(labels):
        raise BundleError(f"{path}: manifest 'labels' has duplicates: {labels}")
    _check_thresholds(manifest, labels, path)
    version = _require(manifest, "version", str, path)
    if not is_safe_name(version):
        raise BundleError(f"{path}: version {version!r} may hold only letters, digits, '.', '-' and '_'")
    model_file = _require(manifest, "model_file", str, path)
    if not is_safe_name(model_file):
        raise BundleError(f"{path}: model_file {model_file!r} must be a plain file name")
    sha256 = _require(manifest, "sha256", str, path)
    bundle = Bundle(
        path=path,
        name=str(manifest.get("name", path.name)),
        version=version,
        labels=tuple(labels),
        input=_parse_input(_require(manifest, "input", dict, path), path),
        model_file=model_file,
        sha256=sha256.lower(),
        quantization=str(manifest.get("quantization", "unknown")),
        output_kind=_parse_output_kind(manifest, path),
        manifest=manifest,
    )
    if not bundle.model_path.is_file():
        raise BundleError(f"{path}: model file {model_file} is missing; copy the bundle again")
    if verify_checksum:
        actual = file_sha256(bundle.model_path)
        if actual != bundle.sha256:
            raise BundleError(
                f"{path}: {model_file} is corrupt or truncated (sha256 {actual[:12]}... "
                f"!= manifest {bundle.sha256[:12]}...); copy the bundle again"
            )
    return bundle
