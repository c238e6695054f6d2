"""Scan a folder of labelled photos, check every file, and split them stably.

``DATA_DIR/<class>/<image files>``: each sub-folder is a class. Files that cannot be used are
skipped and listed with the reason; a class left with too few usable images stops the run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from smartbin.device.errors import SmartbinError

from .images import ImageLoadError, open_rgb

SPLITS = ("train", "val", "test")
# As in TensorFlow's retrain.py: "_nohash_" in a file name marks photos of one object that must stay together.
_NOHASH = re.compile(r"_nohash_.*$")
_HASH_BUCKETS = 2**27 - 1
# Modes that load_rgb converts; reported so a user knows their data was not plain RGB.
_CONVERTED_MODES = {
    "L": "grayscale",
    "LA": "grayscale+alpha",
    "CMYK": "CMYK",
    "RGBA": "alpha",
    "P": "palette",
}


class DatasetError(SmartbinError):
    """The data folder cannot be used for training."""


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    split: str


@dataclass
class ScanResult:
    data_dir: Path
    labels: list[str]
    items: list[Item]
    skipped: list[dict[str, str]] = field(default_factory=list)
    converted: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Item]:
        return [item for item in self.items if item.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.labels}
        for item in self.items:
            table[item.label][item.split] += 1
        return table


def split_of(file_name: str, val_percent: float, test_percent: float) -> str:
    """The split of a file, from a stable hash of its name (retrain.py's scheme).

    Adding or removing other files never moves this one; ``_nohash_`` suffixes are ignored
    so related photos share a split.
    """
    key = _NOHASH.sub("", file_name)
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % (_HASH_BUCKETS + 1)
    percent = bucket * (100.0 / _HASH_BUCKETS)
    if percent < val_percent:
        return "val"
    if percent < val_percent + test_percent:
        return "test"
    return "train"


def scan_dataset(
    data_dir: str | Path,
    *,
    val_percent: float = 15.0,
    test_percent: float = 15.0,
    min_images: int = 10,
    min_size: int = 32,
) -> ScanResult:
    """Check every file under ``data_dir`` and assign the usable ones to splits.

    Raises :class:`DatasetError` with one line when the folder or a class cannot be used.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise DatasetError(
            f"data folder {data_dir} not found; give a folder with one sub-folder of photos per class"
        )
    if not (val_percent > 0 and test_percent > 0 and val_percent + test_percent < 100):
        raise DatasetError("--val-percent and --test-percent must be positive and add up to less than 100")
    class_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(
            f"{data_dir} has no class sub-folders; put the photos of each class in DATA_DIR/<class>/"
        )
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{data_dir} has only the class {class_dirs[0].name!r}; a classifier needs at least two classes"
        )

    result = ScanResult(data_dir=data_dir, labels=[d.name for d in class_dirs], items=[])
    first_by_digest: dict[str, tuple[Path, str]] = {}
    candidates: list[tuple[Path, str, str]] = []  # (path, label, digest)
    for class_dir in class_dirs:
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            reason = _check_file(path, min_size, result)
            if reason:
                result.skipped.append({"path": str(path), "label": class_dir.name, "reason": reason})
                continue
            candidates.append((path, class_dir.name, hashlib.sha256(path.read_bytes()).hexdigest()))

    # Exact duplicates: keep the first copy; a copy filed under another class is ambiguous, so drop all copies.
    conflicting = {d for d, labels in _labels_by_digest(candidates).items() if len(labels) > 1}
    for path, label, digest in candidates:
        split = split_of(path.name, val_percent, test_percent)
        if digest in conflicting:
            result.skipped.append(
                {
                    "path": str(path),
                    "label": label,
                    "reason": "the same image is filed under more than one class",
                }
            )
            continue
        if digest in first_by_digest:
            original, original_split = first_by_digest[digest]
            leak = " (would have leaked across splits)" if split != original_split else ""
            result.skipped.append(
                {"path": str(path), "label": label, "reason": f"exact duplicate of {original}{leak}"}
            )
            continue
        first_by_digest[digest] = (path, split)
        result.items.append(Item(path=path, label=label, split=split))

    counts = Counter(item.label for item in result.items)
    for label in result.labels:
        if counts[label] < min_images:
            skipped = [s for s in result.skipped if s["label"] == label]
            why = (
                f" ({len(skipped)} skipped, e.g. {Path(skipped[0]['path']).name}: {skipped[0]['reason']})"
                if skipped
                else ""
            )
            raise DatasetError(
                f"class {label!r} has {counts[label]} usable images{why}, at least {min_images} needed; add photos to {data_dir / label} or remove that folder"
            )
    for label, per_split in result.counts().items():
        for split, n in per_split.items():
            if n == 0:
                result.warnings.append(f"class {label!r} has no images in the {split} split; add photos")
    if not result.split("val") or not result.split("test"):
        raise DatasetError(
            "the validation or test split is empty; add photos or raise --val-percent/--test-percent"
        )
    return result


def _labels_by_digest(candidates: list[tuple[Path, str, str]]) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for _, label, digest in candidates:
        labels.setdefault(digest, set()).add(label)
    return labels


def _check_file(path: Path, min_size: int, result: ScanResult) -> str | None:
    """Return why ``path`` cannot be used, or None; note images that need a colour conversion."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "not an image"
    try:
        rgb = open_rgb(path)
    except ImageLoadError as exc:
        return f"unreadable or truncated ({exc.__cause__ or exc})"
    if min(rgb.size) < min_size:
        return f"too small ({rgb.size[0]}x{rgb.size[1]} < {min_size} px)"
    if mode != "RGB":
        result.converted.append({"path": str(path), "from": _CONVERTED_MODES.get(mode, mode)})
    return None


def write_splits_csv(result: ScanResult, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for item in result.items:
            writer.writerow([str(item.path), item.label, item.split])


def read_splits_csv(path: Path) -> list[Item]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            Item(path=Path(row["path"]), label=row["label"], split=row["split"]) for row in csv.DictReader(f)
        ]


def write_dataset_report(result: ScanResult, out_dir: Path) -> None:
    """dataset_report.json (everything) and dataset_report.md (for people)."""
    counts = result.counts()
    report = {
        "data_dir": str(result.data_dir),
        "labels": result.labels,
        "usable": len(result.items),
        "counts": counts,
        "skipped": result.skipped,
        "converted": result.converted,
        "warnings": result.warnings,
    }
    (out_dir / "dataset_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Dataset report",
        "",
        f"`{result.data_dir}`: {len(result.items)} usable images, {len(result.skipped)} skipped, "
        f"{len(result.converted)} converted to RGB.",
        "",
        "| class | " + " | ".join(SPLITS) + " | total |",
        "|---|" + "---:|" * (len(SPLITS) + 1),
    ]
    for label, per_split in counts.items():
        lines.append(
            f"| {label} | "
            + " | ".join(str(per_split[s]) for s in SPLITS)
            + f" | {sum(per_split.values())} |"
        )
    if result.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in result.warnings)]
    if result.skipped:
        lines += ["", "## Skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| {s['path']} | {s['reason']} |" for s in result.skipped]
    if result.converted:
        lines += ["", "## Converted to RGB", "", "| file | from |", "|---|---|"]
        lines += [f"| {c['path']} | {c['from']} |" for c in result.converted]
    (out_dir / "dataset_report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
