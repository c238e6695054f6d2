"""Scan one or more sets of labelled photos, check every file, and split them stably.

``DATA_DIR/<class>/<image files>``: each sub-folder of a set is a class; a set may lack some classes.
Files that cannot be used are skipped and listed with the reason; a class left with too few usable
images stops the run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from smartbin.device.errors import SmartbinError
from smartbin.device.hardware.cameras.folder import IMAGE_SUFFIXES
from smartbin.device.vision.images import check_frame

from .images import ImageLoadError, load_rgb

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
    "I;16": "16-bit grayscale",
}


class DatasetError(SmartbinError):
    """The data folders cannot be used for training."""


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    split: str
    source: str = ""  # the name of the photo set (DATA_DIR) it came from; not in splits.csv
    sha256: str = ""  # of the file's bytes (duplicate checks and the data's provenance)


@dataclass(frozen=True)
class PhotoSet:
    """One DATA_DIR: a folder with one sub-folder of photos per class, named after its folder."""

    name: str
    path: Path
    classes: tuple[str, ...]  # its class folders


@dataclass
class ScanResult:
    sets: list[PhotoSet]
    labels: list[str]
    items: list[Item]
    skipped: list[dict[str, str]] = field(default_factory=list)
    converted: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Item]:
        return [item for item in self.items if item.split == name]

    def counts(self, source: str | None = None) -> dict[str, dict[str, int]]:
        """Usable photos per class and split, of every set or of the set named ``source``."""
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.labels}
        for item in self.items:
            if source is None or item.source == source:
                table[item.label][item.split] += 1
        return table

    def fingerprint(self, source: str) -> dict[str, Any]:
        """The set named ``source`` as provenance: name, usable photos and one sha256 over them.

        The digest covers each usable photo's class, file name and content (not where the set lies), so the
        same photos give the same digest on any machine, and adding, moving or changing one changes it.
        """
        lines = sorted(
            f"{item.label}/{item.path.name} {item.sha256}\n" for item in self.items if item.source == source
        )
        digest = hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
        return {"name": source, "images": len(lines), "sha256": digest}

    def missing(self, source: str) -> list[str]:
        """The labels the set named ``source`` has no usable photos of."""
        return [label for label, n in self.counts(source).items() if not sum(n.values())]


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
    data_dirs: str | Path | Sequence[str | Path],
    *,
    classes: Sequence[str] | None = None,
    val_percent: float = 15.0,
    test_percent: float = 15.0,
    min_images: int = 10,
    min_size: int = 32,
) -> ScanResult:
    """Check every file of one or more photo sets and assign the usable ones to splits.

    The labels are the sorted class names of all sets (or ``classes``); a set may lack some of them.
    Without ``classes``, a class that only one of several sets has stops the scan (a typo such as
    ``Glass`` next to ``glass`` would otherwise become a class of its own). Duplicates are found
    across sets too: the copy in the set given first is kept.

    Raises :class:`DatasetError` with one line when a folder or a class cannot be used.
    """
    if isinstance(data_dirs, (str, Path)):
        data_dirs = [data_dirs]
    check_split_percents(val_percent, test_percent)
    sets = photo_sets(data_dirs)
    labels = _labels(sets, classes)

    result = ScanResult(sets=sets, labels=labels, items=[])
    first_by_digest: dict[str, tuple[Path, str]] = {}
    candidates: list[tuple[Path, str, str, str]] = []  # (path, label, source, digest)
    for photo_set in sets:
        loose = _photos_in(photo_set.path)
        if loose:
            result.warnings.append(
                f"{len(loose)} photo(s) directly in {photo_set.path} (e.g. {loose[0].name}) are in no class folder and were ignored"
            )
        for label in photo_set.classes:
            class_dir = photo_set.path / label
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                reason = _check_file(path, min_size, result)
                if reason:
                    result.skipped.append({"path": str(path), "label": label, "reason": reason})
                    continue
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                candidates.append((path, label, photo_set.name, digest))

    # Exact duplicates: keep the first copy; a copy filed under another class is ambiguous, so drop all copies.
    conflicting = {d for d, found in _labels_by_digest(candidates).items() if len(found) > 1}
    for path, label, source, digest in candidates:
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
        result.items.append(Item(path=path, label=label, split=split, source=source, sha256=digest))

    counts = Counter(item.label for item in result.items)
    for label in result.labels:
        if counts[label] < min_images:
            skipped = [s for s in result.skipped if s["label"] == label]
            why = (
                f" ({len(skipped)} skipped, e.g. {Path(skipped[0]['path']).name}: {skipped[0]['reason']})"
                if skipped
                else ""
            )
            folders = " or ".join(str(s.path / label) for s in sets if label in s.classes)
            what = (
                f"add photos to {folders} or remove that folder"
                if folders
                else f"add a {label}/ folder of photos to a set or leave {label!r} out of --classes"
            )
            raise DatasetError(
                f"class {label!r} has {counts[label]} usable images{why}, at least {min_images} needed; {what}"
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


def check_split_percents(val_percent: float, test_percent: float) -> None:
    """Refuse shares of validation and test photos that leave no training split."""
    if not (val_percent > 0 and test_percent > 0 and val_percent + test_percent < 100):
        raise DatasetError("--val-percent and --test-percent must be positive and add up to less than 100")


def photo_sets(data_dirs: Sequence[str | Path]) -> list[PhotoSet]:
    """Each DATA_DIR as a set, checked: it exists, holds class folders (it is no class folder itself), is named uniquely."""
    sets: list[PhotoSet] = []
    for data_dir in data_dirs:
        path = Path(data_dir).expanduser().resolve()
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "not found"
            raise DatasetError(
                f"data folder {path} {what}; give a folder with one sub-folder of photos per class"
            )
        class_dirs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        odd = next((name for name in class_dirs if not name.isprintable()), None)
        if odd is not None:  # a label with a line break would split labels.txt and every report
            raise DatasetError(
                f"{path} has a class folder named {odd!r}; rename it without control characters"
            )
        if not class_dirs:
            if _photos_in(path):
                raise DatasetError(
                    f"{path} holds photos but no class sub-folders: it looks like a class folder, not a photo set; "
                    f"give the set that holds it ({path.parent}), with one sub-folder per class"
                )
            raise DatasetError(
                f"{path} has no class sub-folders; put the photos of each class in DATA_DIR/<class>/"
            )
        for other in sets:
            if other.path == path:
                raise DatasetError(f"{path} is given twice; give each photo set once")
            if other.name == path.name:
                raise DatasetError(
                    f"two photo sets are named {path.name!r} ({other.path} and {path}); the reports name sets "
                    "by their folder, so rename one"
                )
        sets.append(PhotoSet(path.name, path, tuple(class_dirs)))
    if not sets:
        raise DatasetError(
            "no data folder given; give at least one folder with one sub-folder of photos per class"
        )
    return sets


def _photos_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix; a set's README or licence file is no photo)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _labels(sets: list[PhotoSet], classes: Sequence[str] | None) -> list[str]:
    """The sorted labels of all sets, checked against ``classes`` (or, without it, against each other)."""
    found = sorted({name for s in sets for name in s.classes})
    if classes is not None:
        listed = set(classes)
        for s in sets:
            unlisted = [name for name in s.classes if name not in listed]
            if unlisted:
                raise DatasetError(
                    f"{s.path} has the class folder {unlisted[0]!r}, which --classes ({','.join(classes)}) does not "
                    "list; add it to --classes or move that folder out of the set"
                )
        labels = sorted(listed)
    else:
        if len(sets) > 1:
            for name in found:
                having = [s for s in sets if name in s.classes]
                if len(having) == 1:
                    raise DatasetError(
                        f"class {name!r} is only in the set {having[0].name!r} ({having[0].path}), none of the other sets "
                        f"has it; check the folder's spelling, or if it is right, pass --classes {','.join(found)}"
                    )
        labels = found
    if len(labels) < 2:
        only = labels[0] if labels else "none"
        raise DatasetError(
            f"{', '.join(str(s.path) for s in sets)} has only the class {only!r}; a classifier needs at least two classes"
        )
    return labels


def _labels_by_digest(candidates: list[tuple[Path, str, str, str]]) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for _, label, _, digest in candidates:
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
        rgb = load_rgb(path)  # as the bin decodes it: what it cannot read, training skips
    except ImageLoadError as exc:
        return f"unreadable or truncated ({exc})"
    height, width = rgb.shape[:2]
    if min(height, width) < min_size:
        return f"too small ({width}x{height} < {min_size} px)"
    try:
        check_frame(rgb, path.name)
    except ImageLoadError as exc:
        return f"the bin would refuse it ({exc})"
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
    """dataset_report.json (everything) and dataset_report.md (for people), overall and per photo set."""
    sets = [
        {
            "name": s.name,
            "data_dir": str(s.path),
            "usable": sum(1 for item in result.items if item.source == s.name),
            "counts": result.counts(s.name),
            "missing_classes": result.missing(s.name),
        }
        for s in result.sets
    ]
    report = {
        "data_dirs": [str(s.path) for s in result.sets],
        "labels": result.labels,
        "usable": len(result.items),
        "counts": result.counts(),
        "sets": sets,
        "skipped": result.skipped,
        "converted": result.converted,
        "warnings": result.warnings,
    }
    (out_dir / "dataset_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Dataset report",
        "",
        f"{', '.join(f'`{s.path}`' for s in result.sets)}: {len(result.items)} usable images, "
        f"{len(result.skipped)} skipped, {len(result.converted)} converted to RGB.",
        "",
        *_counts_table(result.counts()),
    ]
    if len(sets) > 1:
        for s in sets:
            missing = f" No photos of: {', '.join(s['missing_classes'])}." if s["missing_classes"] else ""
            lines += [
                "",
                f"## Set {s['name']}",
                "",
                f"`{s['data_dir']}`: {s['usable']} usable images.{missing}",
                "",
            ]
            lines += _counts_table(s["counts"])
    if result.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in result.warnings)]
    if result.skipped:
        lines += ["", "## Skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| {s['path']} | {s['reason']} |" for s in result.skipped]
    if result.converted:
        lines += ["", "## Converted to RGB", "", "| file | from |", "|---|---|"]
        lines += [f"| {c['path']} | {c['from']} |" for c in result.converted]
    (out_dir / "dataset_report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _counts_table(counts: dict[str, dict[str, int]]) -> list[str]:
    lines = ["| class | " + " | ".join(SPLITS) + " | total |", "|---|" + "---:|" * (len(SPLITS) + 1)]
    for label, per_split in counts.items():
        lines.append(
            f"| {label} | "
            + " | ".join(str(per_split[s]) for s in SPLITS)
            + f" | {sum(per_split.values())} |"
        )
    return lines
