"""``smartbin evaluate``: how well, and how fast, a bundle classifies a folder of labelled photos.

The bundle runs through the device's :class:`~smartbin.device.vision.classifier.Classifier` (the same
runtime, preprocessing and thread setting a bin uses), so the numbers are the bin's numbers
apart from the CPU. It needs only what a bin has (the ``[device]`` extra: photos are decoded
by :func:`smartbin.device.vision.images.read_rgb`, as training, the folder camera and ``classify`` decode
them), so it also runs on the bin itself to measure the
latency of its own CPU; without matplotlib it writes no PNG and says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.config import Config, parse_config
from smartbin.device.errors import CameraError, SmartbinError
from smartbin.device.files import check_out_dir, check_outside, dir_problem
from smartbin.device.hardware.cameras.folder import IMAGE_SUFFIXES
from smartbin.device.thresholds import as_status, describe, thresholds_in_force
from smartbin.device.vision.bundle import Bundle, load_bundle
from smartbin.device.vision.classifier import Classifier
from smartbin.device.vision.images import read_rgb
from smartbin.device.vision.model import check_bundle_fits
from smartbin.training.metrics import confusion_matrix, per_class, plot_confusion
from smartbin.training.progress import bar

from .outcomes import compartment_of, format_outcomes, plot_sweep, sorting_outcomes, threshold_sweep

_EVALUATION_FILE = re.compile(
    r"metrics\.json|confusion_matrix(_.+)?\.png|sorting_sweep\.png"
)  # what evaluate writes


@dataclass(frozen=True)
class LabelledImages:
    items: list[tuple[Path, str]]
    notes: list[str]


def scan_labelled(data_dir: str | Path, labels: tuple[str, ...]) -> LabelledImages:
    """Images in ``data_dir/<class>/`` (recursively). Classes the bundle has no label for are kinds it
    was not taught: they count in the sorting outcome, not in accuracy (a note says so)."""
    data_dir = Path(data_dir)
    problem = dir_problem(data_dir)
    if problem:
        raise SmartbinError(f"{data_dir}: {problem}; give a folder with one sub-folder of photos per label")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in labels]
    notes = []
    if unknown:
        notes.append(
            f"{', '.join(unknown)}: no such label in the model {list(labels)}; counted in the sorting "
            "outcome only (kinds it was not taught)"
        )
    items: list[tuple[Path, str]] = []
    for label in [*labels, *unknown]:
        folder = data_dir / label
        if not folder.is_dir():
            notes.append(f"no folder for label {label!r}")
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            notes.append(
                f"{label}: skipped {len(others)} file(s) that are not images (e.g. {others[0].name})"
            )
        items += [(p, label) for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise SmartbinError(
            f"{data_dir}: no photos in sub-folders; put each class's photos in DATA_DIR/<class>/ "
            f"(the model's labels: {', '.join(labels)})"
        )
    return LabelledImages(items, notes)


def _percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000.0, 3)


def _named_folders(data_dirs: str | Path | Sequence[str | Path]) -> dict[str, Path]:
    """The photo folders by name (the reports name them by their folder); a name may occur once."""
    folders: dict[str, Path] = {}
    for data_dir in [data_dirs] if isinstance(data_dirs, (str, Path)) else data_dirs:
        path = Path(data_dir)
        name = path.resolve().name
        if name in folders:
            raise SmartbinError(
                f"{folders[name]} and {path} are both named {name!r}; the report names folders by name, so give "
                "each photo set once and rename one of two sets with the same name"
            )
        folders[name] = path
    return folders


def _earlier_evaluation(out: Path) -> list[Path]:
    """The files of an earlier evaluation in ``out``; a folder holding anything else is refused
    (a training run's ``metrics.json``, a class of photos), since this one would mix into it."""
    if not out.is_dir():
        return []
    files = sorted(out.iterdir())
    others = [p.name for p in files if not _EVALUATION_FILE.fullmatch(p.name)]
    if others:
        raise SmartbinError(
            f"--out {out} holds files that no evaluation wrote ({others[0]}"
            f"{', ...' if len(others) > 1 else ''}); choose a new or empty folder"
        )
    return files


def evaluate_bundle(
    bundle_path: str | Path,
    data_dirs: str | Path | Sequence[str | Path],
    *,
    threads: int | None = None,
    out_dir: str | Path | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Classify every photo, write ``metrics.json``, ``confusion_matrix.png`` and ``sorting_sweep.png``
    to ``out_dir``, return the report.

    Accuracy counts the photos of the bundle's labels; the sorting outcome (where each photo lands
    under ``config``, the default config if None, with the thresholds a bin would apply) counts
    every photo. Given several folders (photo sets), the report also holds accuracy and the
    confusion matrix of each (``by_source``, and ``confusion_matrix_<set>.png``).
    """
    bundle = load_bundle(bundle_path)
    config = config if config is not None else parse_config({})
    check_bundle_fits(bundle, config)
    folders = _named_folders(data_dirs)
    scans = {name: scan_labelled(path, bundle.labels) for name, path in folders.items()}
    classifier = Classifier(bundle, threads=threads)
    out = Path(out_dir) if out_dir is not None else Path(f"evaluation-{bundle.version}")
    check_out_dir(out, "--out")
    check_outside(out, folders.values(), "--out")
    earlier = _earlier_evaluation(out)

    several = len(scans) > 1
    notes = [f"{name}: {note}" if several else note for name, scan in scans.items() for note in scan.notes]
    all_scores, classes, sources, latencies = [], [], [], []
    unreadable: list[str] = []
    photos = [(name, *item) for name, scan in scans.items() for item in scan.items]
    for source, path, label in bar(photos, desc="evaluating"):
        try:
            rgb = read_rgb(path)
        except CameraError as exc:
            unreadable.append(str(exc))
            continue
        if not latencies:  # the first invoke allocates and plans; it is not what a bin sees per item
            classifier.scores(rgb)
        started = time.perf_counter()
        all_scores.append(classifier.scores(rgb))
        latencies.append(time.perf_counter() - started)
        classes.append(label)
        sources.append((source, path))
    if unreadable:
        notes.append(f"skipped {len(unreadable)} image(s) that cannot be classified (e.g. {unreadable[0]})")
    if not classes:
        raise SmartbinError(f"{', '.join(map(str, folders.values()))}: none of the photos could be read")
    scores = np.stack(all_scores)

    thresholds = thresholds_in_force(bundle.labels, bundle.manifest, config.sorting)
    values = {label: t.value for label, t in thresholds.items()}
    went = [compartment_of(row, bundle.labels, config.sorting, values) for row in scores]
    report: dict[str, Any] = {
        "bundle": str(bundle.path),
        "version": bundle.version,
        "quantization": bundle.quantization,
        "data_dirs": [str(path.resolve()) for path in folders.values()],
        "images": len(classes),
        **_accuracy(scores, classes, [s for s, _ in sources], bundle.labels, several),
        "misclassified": [
            {
                "path": str(path),
                "source": source,
                "label": label,
                "predicted": bundle.labels[int(np.argmax(row))],
                "confidence": float(np.max(row)),
            }
            for row, label, (source, path) in zip(scores, classes, sources, strict=True)
            if label in bundle.labels and bundle.labels[int(np.argmax(row))] != label
        ],
        "latency_ms": {
            "p50": _percentile_ms(latencies, 50),
            "p95": _percentile_ms(latencies, 95),
            "mean": round(float(np.mean(latencies)) * 1000.0, 3),
            "what": "preprocess + invoke per image, after one warm-up",
            "threads": threads,
            "runtime": classifier.runtime,
        },
        "config": str(config.source) if config.source else "the default config",
        "thresholds": as_status(thresholds),
        "sorting": sorting_outcomes(went, classes, config.sorting),
        "notes": notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    for path in earlier:  # an earlier report's pictures must not pass for this one's
        path.unlink(missing_ok=True)
    report["outputs"] = {"metrics": str(out / "metrics.json")}
    try:
        _plot(report, bundle, scores, classes, config, values, out)
    except ImportError:
        notes.append("matplotlib is not installed, so no PNG pictures (pip install matplotlib)")
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _accuracy(
    scores: np.ndarray, classes: list[str], sources: list[str], labels: tuple[str, ...], several: bool
) -> dict[str, Any]:
    """Accuracy, per-class figures and the confusion matrix over the photos of the model's labels."""
    known = np.array([c in labels for c in classes])
    truth = np.array([labels.index(c) if c in labels else -1 for c in classes])
    predicted = scores.argmax(axis=1)
    figures = _source_metrics(truth, predicted, known, labels)
    figures["images_of_its_labels"] = figures.pop("images")
    figures["labels"] = list(labels)
    if several:
        names = np.array(sources)
        figures["by_source"] = {
            name: _source_metrics(truth, predicted, known & (names == name), labels)
            for name in dict.fromkeys(sources)
        }
    return figures


def _plot(
    report: dict[str, Any],
    bundle: Bundle,
    scores: np.ndarray,
    classes: list[str],
    config: Config,
    thresholds: dict[str, float],
    out: Path,
) -> None:
    """The confusion matrices (overall and per set) and the threshold sweep, as PNGs in ``out``."""
    accuracy = report["accuracy"]
    pictures = [
        (
            "confusion_matrix",
            report["confusion_matrix"],
            f"{100 * accuracy:.1f}%" if accuracy is not None else "",
        )
    ]
    pictures += [
        (
            f"confusion_matrix_{name}",
            figures["confusion_matrix"],
            f"on {name}: {100 * (figures['accuracy'] or 0):.1f}%",
        )
        for name, figures in report.get("by_source", {}).items()
    ]
    for name, matrix, caption in pictures:
        png = plot_confusion(
            np.array(matrix), bundle.labels, out / f"{name}.png", f"{bundle.version} {caption}"
        )
        report["outputs"][name] = str(png)
    sweep = threshold_sweep(scores, classes, bundle.labels, config.sorting, thresholds)
    if sweep:
        png = plot_sweep(sweep, out / "sorting_sweep.png", f"{bundle.version}: threshold sweep")
        report["outputs"]["sorting_sweep"] = str(png)


def _source_metrics(
    truth: np.ndarray, predicted: np.ndarray, mine: np.ndarray, labels: tuple[str, ...]
) -> dict[str, Any]:
    """Accuracy, per-class figures and the confusion matrix of the images where ``mine`` is true
    (accuracy None where there are none)."""
    matrix = confusion_matrix(truth[mine], predicted[mine], len(labels))
    return {
        "images": int(mine.sum()),
        "accuracy": float(np.trace(matrix) / matrix.sum()) if mine.any() else None,
        "per_class": per_class(matrix, labels),
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`evaluate_bundle`'s report."""
    lat = report["latency_ms"]
    known = report["images_of_its_labels"]
    accuracy = (
        f"accuracy {100 * report['accuracy']:.1f}%"
        if report["accuracy"] is not None
        else "no photos of its labels"
    )
    others = f" ({report['images'] - known} of kinds it was not taught)" if report["images"] > known else ""
    lines = [
        f"{report['version']} ({report['quantization']}) on {report['images']} images{others}: {accuracy}",
        f"{'label':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for label, m in report["per_class"].items():
        lines.append(
            f"{label:<16} {100 * m['precision']:>8.1f}% {100 * m['recall']:>6.1f}% {100 * m['f1']:>5.1f}% {m['support']:>8}"
        )
    threads = lat["threads"] if lat["threads"] is not None else "default"
    lines.append(
        f"latency ({lat['runtime']}, threads {threads}): p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms"
    )
    for name, figures in report.get("by_source", {}).items():
        if figures["accuracy"] is not None:
            lines.append(f"{name}: accuracy {100 * figures['accuracy']:.1f}% on {figures['images']} images")
    lines.append(f"misclassified: {len(report['misclassified'])}")
    lines.append(
        f"where the photos land ({report['config']}; sorts at confidence {describe(report['thresholds'])}):"
    )
    lines.append(format_outcomes(report["sorting"]))
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append(f"wrote {' and '.join(report['outputs'].values())}")
    return "\n".join(lines)
