"""``smartbin evaluate``: how well, and how fast, a bundle classifies a folder of labelled photos.

The bundle runs through the device's :class:`~smartbin.device.classifier.Classifier` (the same
runtime, preprocessing and thread setting a bin uses), so the numbers are the bin's numbers
apart from the CPU. It needs only what a bin has (the ``[device]`` extra: photos are decoded
by :func:`smartbin.device.images.read_rgb`, as training, the folder camera and ``classify`` decode
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

from smartbin.device.bundle import load_bundle
from smartbin.device.cameras.folder import IMAGE_SUFFIXES
from smartbin.device.classifier import Classifier
from smartbin.device.errors import CameraError, SmartbinError
from smartbin.device.files import check_out_dir, check_outside, dir_problem
from smartbin.device.images import read_rgb
from smartbin.training.metrics import confusion_matrix, per_class, plot_confusion

_EVALUATION_FILE = re.compile(r"metrics\.json|confusion_matrix(_.+)?\.png")  # what evaluate writes


@dataclass(frozen=True)
class LabelledImages:
    items: list[tuple[Path, str]]
    notes: list[str]


def scan_labelled(data_dir: str | Path, labels: tuple[str, ...]) -> LabelledImages:
    """Images in ``data_dir/<label>/`` (recursively) for the bundle's labels; other folders are noted and skipped."""
    data_dir = Path(data_dir)
    problem = dir_problem(data_dir)
    if problem:
        raise SmartbinError(f"{data_dir}: {problem}; give a folder with one sub-folder of photos per label")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in labels]
    notes = []
    if unknown:
        notes.append(
            f"skipped folders not named after a label of the bundle {list(labels)}: {', '.join(unknown)}"
        )
    items: list[tuple[Path, str]] = []
    for label in labels:
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
            f"{data_dir}: no photos in sub-folders named after the bundle's labels ({', '.join(labels)}); "
            "put each class's photos in DATA_DIR/<label>/"
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
) -> dict[str, Any]:
    """Classify every photo, write ``metrics.json`` and ``confusion_matrix.png`` to ``out_dir``, return the report.

    Given several folders (photo sets), the report also holds accuracy and the confusion matrix of
    each (``by_source``, and ``confusion_matrix_<set>.png``).
    """
    bundle = load_bundle(bundle_path)
    folders = _named_folders(data_dirs)
    scans = {name: scan_labelled(path, bundle.labels) for name, path in folders.items()}
    classifier = Classifier(bundle, threads=threads)
    out = Path(out_dir) if out_dir is not None else Path(f"evaluation-{bundle.version}")
    check_out_dir(out, "--out")
    check_outside(out, folders.values(), "--out")
    earlier = _earlier_evaluation(out)

    several = len(scans) > 1
    notes = [f"{name}: {note}" if several else note for name, scan in scans.items() for note in scan.notes]
    truth, predicted, sources, latencies, misclassified = [], [], [], [], []
    unreadable: list[str] = []
    warmed_up = False
    for source, path, label in ((name, *item) for name, scan in scans.items() for item in scan.items):
        try:
            rgb = read_rgb(path)
        except CameraError as exc:
            unreadable.append(str(exc))
            continue
        if not warmed_up:  # the first invoke allocates and plans; it is not what a bin sees per item
            classifier.scores(rgb)
            warmed_up = True
        started = time.perf_counter()
        scores = classifier.scores(rgb)
        latencies.append(time.perf_counter() - started)
        best = int(np.argmax(scores))
        truth.append(bundle.labels.index(label))
        predicted.append(best)
        sources.append(source)
        if bundle.labels[best] != label:
            misclassified.append(
                {
                    "path": str(path),
                    "source": source,
                    "label": label,
                    "predicted": bundle.labels[best],
                    "confidence": float(scores[best]),
                }
            )
    if unreadable:
        notes.append(f"skipped {len(unreadable)} image(s) that cannot be classified (e.g. {unreadable[0]})")
    if not truth:
        raise SmartbinError(f"{', '.join(map(str, folders.values()))}: none of the photos could be read")

    matrix = confusion_matrix(np.array(truth), np.array(predicted), len(bundle.labels))
    report: dict[str, Any] = {
        "bundle": str(bundle.path),
        "version": bundle.version,
        "quantization": bundle.quantization,
        "data_dirs": [str(path.resolve()) for path in folders.values()],
        "images": len(truth),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "per_class": per_class(matrix, bundle.labels),
        "labels": list(bundle.labels),
        "confusion_matrix": matrix.tolist(),
        "latency_ms": {
            "p50": _percentile_ms(latencies, 50),
            "p95": _percentile_ms(latencies, 95),
            "mean": round(float(np.mean(latencies)) * 1000.0, 3),
            "what": "preprocess + invoke per image, after one warm-up",
            "threads": threads,
            "runtime": classifier.runtime,
        },
        "misclassified": misclassified,
        "notes": notes,
    }
    if several:
        report["by_source"] = {
            name: _source_metrics(
                np.array(truth), np.array(predicted), np.array(sources) == name, bundle.labels
            )
            for name in scans
        }
    out.mkdir(parents=True, exist_ok=True)
    for path in earlier:  # an earlier report's pictures must not pass for this one's
        path.unlink(missing_ok=True)
    report["outputs"] = {"metrics": str(out / "metrics.json")}
    try:
        png = plot_confusion(
            matrix,
            bundle.labels,
            out / "confusion_matrix.png",
            f"{bundle.version}: {100 * report['accuracy']:.1f}%",
        )
        report["outputs"]["confusion_matrix"] = str(png)
        for name, figures in report.get("by_source", {}).items():
            png = plot_confusion(
                np.array(figures["confusion_matrix"]),
                bundle.labels,
                out / f"confusion_matrix_{name}.png",
                f"{bundle.version} on {name}: {100 * figures['accuracy']:.1f}%",
            )
            report["outputs"][f"confusion_matrix_{name}"] = str(png)
    except ImportError:
        notes.append("matplotlib is not installed, so no confusion_matrix.png (pip install matplotlib)")
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _source_metrics(
    truth: np.ndarray, predicted: np.ndarray, mine: np.ndarray, labels: tuple[str, ...]
) -> dict[str, Any]:
    """Accuracy, per-class figures and the confusion matrix of the images where ``mine`` is true."""
    matrix = confusion_matrix(truth[mine], predicted[mine], len(labels))
    return {
        "images": int(mine.sum()),
        "accuracy": float(np.trace(matrix) / matrix.sum()) if mine.any() else 0.0,
        "per_class": per_class(matrix, labels),
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`evaluate_bundle`'s report."""
    lat = report["latency_ms"]
    lines = [
        f"{report['version']} ({report['quantization']}) on {report['images']} images: "
        f"accuracy {100 * report['accuracy']:.1f}%",
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
        lines.append(f"{name}: accuracy {100 * figures['accuracy']:.1f}% on {figures['images']} images")
    lines.append(f"misclassified: {len(report['misclassified'])}")
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append(f"wrote {' and '.join(report['outputs'].values())}")
    return "\n".join(lines)
