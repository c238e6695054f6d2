"""Read a training run directory (what ``smartbin train`` writes) without importing TensorFlow.

A run directory holds ``model.keras`` (raw RGB pixels in, softmax out, preprocessing inside),
``run.json`` (labels, input size, resize mode, provenance) and ``splits.csv`` (``path,label,split``
for every usable image). Conversion calibrates on the train split and gates on the test split.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartbin.device.errors import SmartbinError, os_error_reason
from smartbin.device.files import dir_problem
from smartbin.device.vision.bundle import RESIZE_MODES, InputSpec

MODEL_NAME = "model.keras"
RUN_JSON = "run.json"
SPLITS_CSV = "splits.csv"
SPLITS = ("train", "val", "test")
# run.json keys a bundle's manifest carries over ("weights" is reduced to a file name, "args" loses paths).
_PROVENANCE_KEYS = (
    "backbone",
    "alpha",
    "weights",
    "weights_sha256",
    "weights_package",
    "weights_file",
    "data",
    "seed",
    "created",
    "args",
    "versions",
)
_PATH_ARGS = {"out", "data_dir", "data_dirs", "weights"}  # in "data" and "weights" without their paths
_TRAIN_HINT = "train one with 'smartbin train DATA_DIR --out RUN_DIR'"


def _file_name(value: Any) -> Any:
    """``/somewhere/weights.npz`` -> ``weights.npz``; ``imagenet``, ``none`` and non-strings unchanged."""
    return Path(value).name if isinstance(value, str) else value


class RunDirError(SmartbinError):
    """A training run directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class Example:
    path: Path
    label: str


@dataclass(frozen=True)
class TrainingRun:
    path: Path
    labels: tuple[str, ...]
    height: int
    width: int
    resize: str
    info: dict[str, Any] = field(repr=False)
    splits: dict[str, list[Example]] = field(repr=False)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_NAME

    def input_spec(self, dtype: str = "float32") -> InputSpec:
        """The bundle's input: raw pixels (scale 1, offset 0) because preprocessing is inside the model."""
        return InputSpec(height=self.height, width=self.width, dtype=dtype, resize=self.resize)

    def label_index(self, label: str) -> int:
        return self.labels.index(label)

    def provenance(self) -> dict[str, Any]:
        """What the bundle's manifest records about where the model came from: names, versions and sha256.

        No absolute paths of the machine that trained it: a weights file and each photo set are named by
        their file or folder name with a digest (``data``: photos and one sha256 per set, from ``run.json``).
        """
        info = self.info
        record: dict[str, Any] = {key: info[key] for key in _PROVENANCE_KEYS if key in info}
        if "weights" in record:
            record["weights"] = _file_name(record["weights"])
        if "data" not in record:  # runs from before the data fingerprints: at least the sets' names
            record["data"] = [{"name": _file_name(d)} for d in self.data_dirs]
        if isinstance(info.get("args"), dict):
            record["args"] = {k: v for k, v in info["args"].items() if k not in _PATH_ARGS}
        record["input_size"] = [self.height, self.width]
        record["resize"] = self.resize
        record["split_sizes"] = {name: len(items) for name, items in self.splits.items()}
        return record

    @property
    def data_dirs(self) -> list[str]:
        """The photo sets it trained on (``data_dirs``, or ``data_dir`` of runs before several sets)."""
        info = self.info
        return info.get("data_dirs") or ([info["data_dir"]] if "data_dir" in info else [])

    def source_of(self, path: Path) -> str | None:
        """The name of the photo set (``run.json``'s ``data_dirs``) that ``path`` lies in, if any."""
        for data_dir in self.data_dirs:
            if isinstance(data_dir, str) and path.is_relative_to(data_dir):
                return Path(data_dir).name
        return None

    def default_name(self, quantization: str) -> str:
        """A bundle name such as ``efficientnet_lite0-int8`` (safe as a file name)."""
        backbone = re.sub(r"[^A-Za-z0-9._-]+", "-", str(self.info.get("backbone", "model"))).strip(".-")
        return f"{backbone or 'model'}-{quantization}"


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: no {RUN_JSON}; is this a run directory? ({_TRAIN_HINT})") from None
    except OSError as exc:
        raise RunDirError(f"{path / RUN_JSON}: {os_error_reason(exc)}; train again or restore it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path / RUN_JSON}: unreadable ({exc}); train again or restore it") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path / RUN_JSON}: expected a JSON object")
    return info


def _read_splits(path: Path, labels: tuple[str, ...]) -> dict[str, list[Example]]:
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    try:
        with open(path / SPLITS_CSV, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label", "split"} <= set(reader.fieldnames):
                raise RunDirError(f"{path / SPLITS_CSV}: expected the header 'path,label,split'")
            for line, row in enumerate(reader, start=2):
                label, split = row["label"], row["split"]
                if None in (row["path"], label, split):
                    raise RunDirError(
                        f"{path / SPLITS_CSV}:{line}: expected path,label,split; train again or restore it"
                    )
                if label not in labels:
                    raise RunDirError(
                        f"{path / SPLITS_CSV}:{line}: label {label!r} is not in run.json labels {list(labels)}"
                    )
                if split not in splits:
                    raise RunDirError(
                        f"{path / SPLITS_CSV}:{line}: unknown split {split!r}; expected {SPLITS}"
                    )
                splits[split].append(Example(Path(row["path"]), label))
    except FileNotFoundError:
        raise RunDirError(f"{path}: no {SPLITS_CSV}; the run is incomplete ({_TRAIN_HINT})") from None
    except OSError as exc:
        raise RunDirError(f"{path / SPLITS_CSV}: {os_error_reason(exc)}; train again or restore it") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path / SPLITS_CSV}: unreadable ({exc}); train again or restore it") from None
    return splits


def load_run(path: str | Path) -> TrainingRun:
    """Read and check a run directory; raise :class:`RunDirError` with one line if it is unusable."""
    path = Path(path)
    problem = dir_problem(path)
    if problem:
        raise RunDirError(f"{path}: {problem}; give a run directory ({_TRAIN_HINT})")
    if not (path / MODEL_NAME).is_file():
        raise RunDirError(f"{path}: no {MODEL_NAME} in the run directory; {_TRAIN_HINT}")
    info = _read_run_json(path)
    labels = info.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise RunDirError(f"{path / RUN_JSON}: 'labels' must list at least two class names")
    if len(set(labels)) != len(labels):
        raise RunDirError(f"{path / RUN_JSON}: 'labels' has duplicates: {labels}")
    size = info.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(x, int) and x >= 8 for x in size)):
        raise RunDirError(f"{path / RUN_JSON}: 'input_size' must be [height, width] (at least 8 each)")
    resize = info.get("resize", "stretch")
    if resize not in RESIZE_MODES:
        raise RunDirError(f"{path / RUN_JSON}: unknown resize {resize!r}; expected one of {RESIZE_MODES}")
    labels_t = tuple(labels)
    return TrainingRun(
        path=path,
        labels=labels_t,
        height=size[0],
        width=size[1],
        resize=resize,
        info=info,
        splits=_read_splits(path, labels_t),
    )


def load_keras_model(run: TrainingRun) -> Any:
    """Load ``model.keras`` and check it fits ``run.json`` (input size, one output per label)."""
    import keras

    if run.model_path.is_file() and not zipfile.is_zipfile(run.model_path):  # a .keras file is a zip
        raise RunDirError(
            f"{run.model_path}: not a Keras model file (truncated or damaged); train again or restore it"
        )
    try:
        model = keras.models.load_model(run.model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{run.model_path}: cannot load the Keras model ({first})") from None
    in_shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if in_shape != (run.height, run.width, 3):
        raise RunDirError(
            f"{run.model_path}: model input {in_shape} does not match run.json input_size "
            f"{[run.height, run.width]} x 3; the run directory is inconsistent"
        )
    n_out = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
    if n_out != len(run.labels):
        raise RunDirError(
            f"{run.model_path}: model has {n_out} outputs but run.json lists {len(run.labels)} labels"
        )
    return model
