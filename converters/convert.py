"""``smartbin convert``: run directory -> verified model bundle.

Convert, write the bundle to a staging directory, run the parity gate on it with the device's
classifier, and only then publish it at ``--out``. A failed gate leaves ``--out`` untouched:
a good bundle already there stays, and no new one appears.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.config import parse_config
from smartbin.device.errors import BundleError, SmartbinError
from smartbin.device.files import check_out_dir
from smartbin.device.vision.bundle import LABELS_NAME, MANIFEST_NAME, InputSpec, is_safe_name, load_bundle
from smartbin.device.vision.native import native_stderr_silenced

from . import tflite
from .bundle_writer import MODEL_NAME, write_bundle
from .frames import load_frames, sample_examples
from .outcomes import DEFAULT_TARGET, SortingTarget
from .parity import (
    ParityReport,
    accuracy_by_source,
    bundle_scores,
    check_bin_accepts,
    compare,
    keras_scores,
)
from .run_dir import TrainingRun, load_keras_model, load_run

log = logging.getLogger(__name__)

BUNDLE_FILES = frozenset({MANIFEST_NAME, LABELS_NAME, MODEL_NAME})  # what a bundle written here holds


@dataclass(frozen=True)
class ConvertResult:
    bundle: Path
    version: str
    size_bytes: int
    seconds: float
    parity: ParityReport
    by_source: dict[str, dict[str, Any]]  # the gate's accuracies per photo set of the run
    sorting: dict[str, Any]  # the manifest's per-label thresholds and the figures behind them


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that would overwrite something that is not a bundle, or cannot be made."""
    check_out_dir(out, "--out")
    if out.exists() and not (out / MANIFEST_NAME).is_file():
        raise BundleError(f"{out}: exists and is not a model bundle; choose another --out")
    others = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES) if out.exists() else []
    if others:  # replacing the bundle would delete them
        raise BundleError(
            f"{out}: a model bundle that also holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}; "
            "move them out or choose another --out"
        )


def check_arguments(
    quantization: str,
    out: str | Path,
    *,
    max_drop: float = 1.0,
    representative: int = 150,
    version: str | None = None,
    name: str | None = None,
    threads: int | None = None,
    target: SortingTarget = DEFAULT_TARGET,
) -> None:
    """Refuse bad arguments in one line before minutes of conversion (as :func:`convert_run` takes them)."""
    if quantization not in tflite.QUANTIZATIONS:
        raise SmartbinError(
            f"unknown quantisation {quantization!r}; choose one of {', '.join(tflite.QUANTIZATIONS)}"
        )
    if not max_drop >= 0:  # NaN too
        raise SmartbinError(f"--max-drop must be 0 or more points, got {max_drop:g}")
    if representative < 1:
        raise SmartbinError(f"--representative must be at least 1 image, got {representative}")
    if threads is not None and threads < 1:
        raise SmartbinError(f"--threads must be 1 or more, got {threads}")
    target.check()
    # The version defaults to <name>-<date>-<sha256[:8]> (see write_bundle): that must be safe too.
    if name is not None and not is_safe_name(f"{name}-YYYYMMDD-01234567"):
        raise BundleError(
            f"name {name!r} cannot make a bundle version; use letters, digits, '.', '-' and '_' "
            "(at most 62 of them) and choose another --name"
        )
    if version is not None and not is_safe_name(version):
        raise BundleError(f"version {version!r} may hold only letters, digits, '.', '-' and '_'")
    check_out(Path(out))


def gate_examples(run: TrainingRun) -> tuple[str, list]:
    """The held-out images the gate uses: the test split, or validation when a run has no test images."""
    for split in ("test", "val"):
        if run.splits[split]:
            return split, run.splits[split]
    raise SmartbinError(
        f"{run.path}: splits.csv has no test or validation images to check the converted model on; "
        "train with more photos"
    )


def convert_run(
    run_dir: str | Path,
    quantization: str,
    out: str | Path,
    *,
    max_drop: float = 1.0,
    representative: int = 150,
    version: str | None = None,
    name: str | None = None,
    threads: int | None = None,
    target: SortingTarget = DEFAULT_TARGET,
) -> ConvertResult:
    """Convert, gate, choose the thresholds for ``target``, publish. Raises
    :class:`~.parity.ParityGateError` (nothing published) on a failed gate."""
    out = Path(out)
    check_arguments(
        quantization,
        out,
        max_drop=max_drop,
        representative=representative,
        version=version,
        name=name,
        threads=threads,
        target=target,
    )
    run = load_run(run_dir)
    gate_split, gate_items = gate_examples(run)
    spec = run.input_spec(tflite.input_dtype(quantization))
    model = load_keras_model(run)

    dataset = None
    if quantization == "int8":
        sample = sample_examples(run, "train", representative, seed=int(run.info.get("seed") or 0))
        log.info("calibrating int8 on %d training images", len(sample))
        dataset = tflite.representative_dataset(load_frames(sample, spec, "reading calibration photos"))
    started = time.perf_counter()
    with native_stderr_silenced():  # the converter's native notes ("fully_quantize: 0, ..."); -v shows them
        model_bytes = tflite.convert_keras(model, quantization, dataset)
    seconds = time.perf_counter() - started
    log.info("converted to %s in %.1f s (%d bytes)", quantization, seconds, len(model_bytes))

    frames = load_frames(gate_items, spec, f"reading {gate_split} photos")
    truth = np.array([run.label_index(ex.label) for ex in gate_items])
    reference = keras_scores(model, frames)
    bundle_args: dict[str, Any] = {
        "name": name or run.default_name(quantization),
        "labels": run.labels,
        "input_spec": spec,
        "quantization": quantization,
        "training": run.provenance(),
    }
    staging_root = Path(tempfile.mkdtemp(prefix="smartbin-convert-"))
    try:
        staged = write_bundle(staging_root / "bundle", model_bytes, version=version, **bundle_args)
        version = load_bundle(staged).version
        scores, runtime = bundle_scores(staged, frames, threads=threads)
        report = compare(reference, scores, truth, split=gate_split, runtime=runtime)
        by_source = accuracy_by_source(
            reference, scores, truth, [run.source_of(ex.path) for ex in gate_items]
        )
        log.debug("%s", report.summary())
        report.check(max_drop)
        check_bin_accepts(staged, threads=threads)
        sorting = sorting_thresholds(run, staged, spec, target, threads)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)

    metrics = {
        **report.as_dict(),
        "by_source": by_source,
        "max_drop_points": max_drop,
        "quantization": quantization,
        "conversion_seconds": round(seconds, 2),
        "training_metrics": run.info.get("metrics", {}),
    }
    write_bundle(out, model_bytes, version=version, metrics=metrics, sorting=sorting, **bundle_args)
    return ConvertResult(
        bundle=out,
        version=version,
        size_bytes=len(model_bytes),
        seconds=seconds,
        parity=report,
        by_source=by_source,
        sorting=sorting,
    )


def sorting_thresholds(
    run: TrainingRun, bundle: Path, spec: InputSpec, target: SortingTarget, threads: int | None
) -> dict[str, Any]:
    """The manifest's ``sorting``: the converted model's thresholds chosen for ``target`` on the
    validation photos with the default config's label map, and the figures they were chosen on.
    Validation, not test: the test split stays for measuring the result."""
    split = "val" if run.splits["val"] else "test"
    items = run.splits[split]
    if not items:
        return {}
    scores, _ = bundle_scores(bundle, load_frames(items, spec, f"reading {split} photos"), threads=threads)
    thresholds, figures = target.choose(
        scores, [ex.label for ex in items], run.labels, parse_config({}).sorting
    )
    log.info("thresholds for %s on %d %s photos: %s", target.describe(), len(items), split, thresholds)
    return {
        "thresholds": thresholds,
        "chosen_on": {"split": split, "images": len(items), **dataclasses.asdict(target)},
        "figures": figures,
    }
