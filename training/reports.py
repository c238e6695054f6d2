"""Evaluation reports of a trained model: metrics, confusion matrices, curves, mistakes.

With several photo sets, accuracy and the confusion matrix are given per set as well as overall:
a model can do well on one set's white poster board and badly on another's real floors.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.converters.outcomes import DEFAULT_TARGET, compartment_of, format_outcomes, sorting_outcomes
from smartbin.device.config import parse_config

from . import keras_progress
from .data import Arrays, image_dataset
from .metrics import confusion_matrix, per_class, plot_confusion


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix (rows = true).

    Macro F1 averages the classes that occur (as truth or prediction): a photo set without glass
    photos, where glass is never predicted either, is not marked down for it.
    """
    confusion = confusion_matrix(y_true, y_pred, len(labels))
    per_label = {
        label: {k: v if k == "support" else round(float(v), 4) for k, v in values.items()}
        for label, values in per_class(confusion, labels).items()
    }
    total = int(confusion.sum())
    occurring = [i for i in range(len(labels)) if confusion[i].sum() or confusion[:, i].sum()]
    return {
        "accuracy": round(float(np.trace(confusion) / total), 4) if total else 0.0,
        "count": total,
        "macro_f1": round(float(np.mean([per_label[labels[i]]["f1"] for i in occurring])), 4)
        if total
        else 0.0,
        "per_class": per_label,
        "confusion": confusion.tolist(),
    }


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, both phases end to end, with the phase boundary marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(1, len(history) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + metric, np.nan) for h in history]
            ax.plot(x, values, style, marker=".", label=(prefix or "train_") + metric)
        phases = [h["phase"] for h in history]
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                ax.axvline(i + 0.5, color="grey", linestyle=":", label=f"{phases[i]} starts")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def predict(model, arrays: Arrays, batch_size: int, desc: str = "predicting") -> np.ndarray:
    ds = image_dataset(arrays, batch_size, training=False, seed=0, with_labels=False)
    return keras_progress.predict(model, ds, len(arrays.labels), batch_size, desc)


def write_reports(
    model,
    data: dict[str, Arrays],
    labels: Sequence[str],
    history: Sequence[dict[str, Any]],
    run_dir: Path,
    batch_size: int,
) -> dict[str, Any]:
    """Evaluate on val and test and write metrics.json, summary.md, PNGs, history.csv, misclassified.csv.

    ``metrics[split]["by_source"]`` holds the same metrics per photo set when there are several.
    """
    metrics: dict[str, Any] = {}
    scores_of: dict[str, np.ndarray] = {}
    for split in ("val", "test"):
        scores = scores_of[split] = predict(model, data[split], batch_size, f"evaluating on {split}")
        predicted = scores.argmax(axis=1)
        metrics[split] = classification_metrics(data[split].labels, predicted, labels)
        plot_confusion(
            np.array(metrics[split]["confusion"]),
            labels,
            run_dir / f"confusion_{split}.png",
            f"{split} ({len(predicted)} images)",
        )
        sources = np.array(data[split].sources)
        if len(set(sources)) > 1:
            metrics[split]["by_source"] = {}
            for source in sorted(set(sources)):
                mine = sources == source
                by_source = classification_metrics(data[split].labels[mine], predicted[mine], labels)
                metrics[split]["by_source"][source] = by_source
                plot_confusion(
                    np.array(by_source["confusion"]),
                    labels,
                    run_dir / f"confusion_{split}_{source}.png",
                    f"{split}, {source} ({int(mine.sum())} images)",
                )
        if split == "test":
            _write_misclassified(data[split], scores, labels, run_dir / "misclassified.csv")
            metrics[split]["misclassified"] = int((predicted != data[split].labels).sum())
    metrics["labels"] = list(labels)
    metrics["sorting"] = sorting_outcome(scores_of, data, labels)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_history(history, run_dir / "history.csv")
    if history:
        plot_curves(history, run_dir / "curves.png")
    (run_dir / "summary.md").write_text(summary_markdown(metrics, labels), encoding="utf-8")
    return metrics


def _write_misclassified(arrays: Arrays, scores: np.ndarray, labels: Sequence[str], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["path", "source", "label", "predicted", "confidence", *(f"score_{label}" for label in labels)]
        )
        for i, row in enumerate(scores):
            guess = int(row.argmax())
            if guess != arrays.labels[i]:
                writer.writerow(
                    [
                        arrays.paths[i],
                        arrays.sources[i],
                        labels[arrays.labels[i]],
                        labels[guess],
                        f"{row[guess]:.4f}",
                        *(f"{s:.4f}" for s in row),
                    ]
                )


def _write_history(history: Sequence[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys or ["phase", "epoch"])
        writer.writeheader()
        writer.writerows(history)


def sorting_outcome(
    scores: dict[str, np.ndarray], data: dict[str, Arrays], labels: Sequence[str]
) -> dict[str, Any]:
    """Where the test photos would land in a bin with the default config, the thresholds chosen on
    validation as ``smartbin convert`` chooses them (for the Keras model)."""
    sorting = parse_config({}).sorting
    val_classes = [labels[i] for i in data["val"].labels]
    thresholds, _ = DEFAULT_TARGET.choose(scores["val"], val_classes, labels, sorting)
    went = [compartment_of(row, tuple(labels), sorting, thresholds) for row in scores["test"]]
    truth = [labels[i] for i in data["test"].labels]
    return {
        "thresholds": thresholds,
        "target": DEFAULT_TARGET.describe(),
        "test": sorting_outcomes(went, truth, sorting),
    }


def summary_markdown(metrics: dict[str, Any], labels: Sequence[str]) -> str:
    lines = ["# Training summary", ""]
    for split in ("val", "test"):
        m = metrics[split]
        lines += [
            f"## {split}: accuracy {m['accuracy']:.2%} on {m['count']} images (macro F1 {m['macro_f1']:.3f})",
            "",
            "| class | precision | recall | F1 | images |",
            "|---|---:|---:|---:|---:|",
        ]
        for label in labels:
            c = m["per_class"][label]
            lines.append(
                f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
            )
        lines.append("")
        if "by_source" in m:
            lines += _by_source_markdown(m["by_source"], labels)
    lines.append(f"Misclassified test images: {metrics['test']['misclassified']} (see misclassified.csv).")
    if "sorting" in metrics:
        sorting = metrics["sorting"]
        shown = ", ".join(f"{label} {t:.2f}" for label, t in sorting["thresholds"].items())
        lines += [
            "",
            f"## Where the test photos land (default config; thresholds for {sorting['target']} on val: {shown})",
            "",
            "```",
            format_outcomes(sorting["test"]),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _by_source_markdown(by_source: dict[str, dict[str, Any]], labels: Sequence[str]) -> list[str]:
    """Per photo set: accuracy, and the confusion matrix (rows: true class, columns: predicted)."""
    lines = []
    for source, m in by_source.items():
        lines += [
            f"### {source}: accuracy {m['accuracy']:.2%} on {m['count']} images",
            "",
            "| true / predicted | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for label, row in zip(labels, m["confusion"], strict=True):
            lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
        lines.append("")
    return lines
