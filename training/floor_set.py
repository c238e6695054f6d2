"""``smartbin floor-set``: the test split's white-board items pasted onto real floors, an evaluation set.

The items are the test-split photos of a white-board set (trashnet3), as ``smartbin train`` splits
them; the floors are the border strips of the test-split photos of a floor set (drinking-waste), so
neither the items nor the floors were seen in training. Every class is pasted (not only glass), so
a floor cannot simply mean one class. The result is a folder-per-class set that ``smartbin
evaluate BUNDLE DIR`` reads, and it is the same for the same seed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from smartbin.device.errors import SmartbinError
from smartbin.device.files import check_out_dir, check_outside, dir_problem, publish_dir
from smartbin.device.hardware.cameras.folder import IMAGE_SUFFIXES

from .backgrounds import Backgrounds
from .cutpaste import cut_out, on_white_board, paste
from .dataset import scan_dataset, split_of
from .images import ImageLoadError, load_rgb
from .progress import bar

REPORT = "floor_set.json"


@dataclass
class FloorSet:
    out: Path
    counts: dict[str, int]  # pasted photos per class
    floors: int  # floor photos the strips came from
    skipped: list[dict[str, str]] = field(default_factory=list)  # item photos left out, with why


def make_floor_set(
    items_dir: Path,
    floors_dir: Path,
    out: Path,
    *,
    seed: int = 0,
    split: str = "test",
    val_percent: float = 15.0,
    test_percent: float = 15.0,
    overwrite: bool = False,
) -> FloorSet:
    """Write ``out/<class>/*.jpg``: each ``split`` photo of ``items_dir`` with its item pasted onto a
    floor from the ``split`` photos of ``floors_dir``, and ``out/floor_set.json`` saying what went where.

    Raises :class:`SmartbinError` (one line, nothing written) for folders that cannot be used.
    """
    items_dir, floors_dir, out = (Path(p).expanduser().resolve() for p in (items_dir, floors_dir, out))
    check_out_dir(out, "--out")
    check_outside(out, (items_dir, floors_dir), "--out")
    if out.exists() and any(out.iterdir()) and not (overwrite and (out / REPORT).is_file()):
        raise SmartbinError(
            f"{out} already exists and is not empty; choose another --out"
            + (" or pass --overwrite" if (out / REPORT).is_file() else "")
        )
    if items_dir == floors_dir:
        raise SmartbinError(f"{items_dir} is given as both the item set and the floor set; give two sets")
    scan = scan_dataset(items_dir, val_percent=val_percent, test_percent=test_percent, min_images=1)
    items = scan.split(split)
    floors = _floor_photos(floors_dir, split, val_percent, test_percent)
    backgrounds = Backgrounds(floors, floor_share=1.0)

    rng = np.random.default_rng(seed)
    result = FloorSet(out=out, counts=dict.fromkeys(scan.labels, 0), floors=len(floors))
    records = []
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for label in scan.labels:
            (staging / label).mkdir()
        for item in bar(items, desc="pasting onto floors"):
            draw = np.random.default_rng(rng.integers(2**63))  # one stream per photo, whatever is skipped
            rgb = load_rgb(item.path)
            cutout = cut_out(rgb)
            if cutout is None:
                why = "its item could not be cut out" if on_white_board(rgb) else "no white board around it"
                result.skipped.append({"path": str(item.path), "label": item.label, "reason": why})
                continue
            pasted = paste(cutout, backgrounds.draw(rgb.shape[:2], draw), draw)
            name = f"{item.path.stem}-floor.jpg"
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(pasted, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            if not ok:
                raise SmartbinError(f"could not encode {name} as JPEG")
            (staging / item.label / name).write_bytes(data.tobytes())
            result.counts[item.label] += 1
            records.append({"file": f"{item.label}/{name}", "item": item.path.name, "label": item.label})
        if not records:
            raise SmartbinError(
                f"no item of the {split} split of {items_dir} could be cut out of a white board "
                f"({len(items)} photos tried); give a set of photos on a white board, such as trashnet3"
            )
        report = {
            "items": {"set": items_dir.name, "split": split, "photos": len(items)},
            "floors": {"set": floors_dir.name, "split": split, "photos": len(floors)},
            "seed": seed,
            "split_percent": {"val": val_percent, "test": test_percent},
            "counts": result.counts,
            "pasted": records,
            "skipped": result.skipped,
        }
        (staging / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        publish_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _floor_photos(floors_dir: Path, split: str, val_percent: float, test_percent: float) -> list[np.ndarray]:
    """The ``split`` photos of a set of items on floors (any class folders), decoded."""
    problem = dir_problem(floors_dir)
    if problem:
        raise SmartbinError(
            f"floor set {floors_dir}: {problem}; give a set of photos on real floors, such as drinking-waste"
        )
    paths = sorted(
        p
        for folder in floors_dir.iterdir()
        if folder.is_dir() and not folder.name.startswith(".")
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    chosen = [p for p in paths if split_of(p.name, val_percent, test_percent) == split]
    if not chosen:
        raise SmartbinError(
            f"floor set {floors_dir} has no photos in its {split} split ({len(paths)} in class folders); "
            "give a set with one sub-folder of photos per class, such as drinking-waste"
        )
    floors = []
    for path in bar(chosen, desc="reading floors"):
        try:
            floors.append(load_rgb(path))
        except ImageLoadError:
            continue  # training skips what the bin cannot read; so does this
    if not floors:
        raise SmartbinError(
            f"floor set {floors_dir}: none of the {len(chosen)} photos of its {split} split can be read"
        )
    return floors
