"""Image loading, dataset checks and stable splits (no TensorFlow needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartbin.training.dataset import (
    DatasetError,
    read_splits_csv,
    scan_dataset,
    split_of,
    write_dataset_report,
    write_splits_csv,
)
from smartbin.training.images import ImageLoadError, load_rgb
from smartbin.training.synthetic import make_shapes_dataset


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "I;16"])
def test_load_rgb_converts_any_mode_to_rgb_uint8(tmp_path: Path, mode: str) -> None:
    image = Image.new("RGB", (20, 10), (200, 30, 30)).convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (10, 20, 3)
    assert rgb.dtype == np.uint8


def test_load_rgb_composites_transparency_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_rgb(tmp_path / "clear.png")[0, 0].tolist() == [255, 255, 255]


def test_load_rgb_applies_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").shape == (30, 10, 3)


def test_load_rgb_rejects_truncated_and_non_images(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("cut.jpg", "text.jpg", "missing.jpg"):
        with pytest.raises(ImageLoadError, match=name):
            load_rgb(tmp_path / name)


def _dataset_with_problems(root: Path) -> Path:
    make_shapes_dataset(root, per_class=14, size=40)
    (root / "can" / "notes.txt").write_text("hello")
    (root / "can" / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    full = root / "glass" / "glass_000.png"
    data = full.read_bytes()
    (root / "glass" / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (12, 12), (1, 2, 3)).save(root / "plastic" / "tiny.png")
    Image.open(root / "plastic" / "plastic_001.png").convert("L").save(root / "plastic" / "grey.png")
    shutil.copy(root / "can" / "can_000.png", root / "can" / "copy_of_can_000.png")
    shutil.copy(root / "glass" / "glass_001.png", root / "plastic" / "misfiled.png")
    (root / ".hidden").mkdir()
    return root


def test_scan_skips_and_reports_problem_files(tmp_path: Path) -> None:
    root = _dataset_with_problems(tmp_path / "data")
    scan = scan_dataset(root, val_percent=20, test_percent=20)
    reasons = {Path(s["path"]).name: s["reason"] for s in scan.skipped}
    assert reasons["notes.txt"] == "not an image"
    assert reasons["fake.jpg"] == "not an image"
    assert reasons["truncated.png"].startswith("unreadable or truncated")
    assert reasons["tiny.png"].startswith("too small (12x12")
    assert reasons["copy_of_can_000.png"].startswith("exact duplicate of")
    assert "more than one class" in reasons["misfiled.png"]
    assert "more than one class" in reasons["glass_001.png"]
    assert len(reasons) == 7
    assert [Path(c["path"]).name for c in scan.converted] == ["grey.png"]
    assert scan.labels == ["can", "glass", "plastic"]
    used = {item.path.name for item in scan.items}
    assert "grey.png" in used and not used & set(reasons)
    assert len(scan.items) == 3 * 14 - 1 + 1  # glass_001 dropped, grey.png added

    write_dataset_report(scan, tmp_path)
    report = json.loads((tmp_path / "dataset_report.json").read_text())
    assert report["usable"] == len(scan.items)
    assert {Path(s["path"]).name for s in report["skipped"]} == set(reasons)
    markdown = (tmp_path / "dataset_report.md").read_text()
    assert "truncated.png" in markdown and "grey.png" in markdown


def test_duplicate_that_would_leak_across_splits_is_named(tmp_path: Path) -> None:
    root = make_shapes_dataset(tmp_path / "data", per_class=12, size=40)
    original = root / "can" / "can_000.png"
    name = next(
        f"dup{i}.png"
        for i in range(1000)
        if split_of(f"dup{i}.png", 15, 15) != split_of(original.name, 15, 15)
    )
    shutil.copy(original, root / "can" / name)
    scan = scan_dataset(root)
    (entry,) = [s for s in scan.skipped if s["path"].endswith(name)]
    assert "leaked across splits" in entry["reason"]


def test_splits_are_stable_when_photos_are_added(tmp_path: Path) -> None:
    root = make_shapes_dataset(tmp_path / "data", per_class=30, size=40, seed=1)
    before = {item.path.name: item.split for item in scan_dataset(root).items}
    make_shapes_dataset(tmp_path / "more", per_class=15, size=40, seed=2)
    for path in (tmp_path / "more").rglob("*.png"):
        shutil.copy(path, root / path.parent.name / f"new_{path.name}")
    after = {item.path.name: item.split for item in scan_dataset(root).items}
    assert len(after) == len(before) + 45
    assert {name: after[name] for name in before} == before
    assert set(after.values()) == {"train", "val", "test"}


def test_split_of_follows_retrain_py_rules() -> None:
    assert split_of("a_nohash_1.jpg", 15, 15) == split_of("a_nohash_2.jpg", 15, 15)
    splits = [split_of(f"img{i}.jpg", 10, 20) for i in range(3000)]
    assert abs(splits.count("val") / 3000 - 0.10) < 0.03
    assert abs(splits.count("test") / 3000 - 0.20) < 0.03


def test_splits_csv_round_trip(tmp_path: Path) -> None:
    scan = scan_dataset(make_shapes_dataset(tmp_path / "data", per_class=12, size=40))
    write_splits_csv(scan, tmp_path / "splits.csv")
    assert (tmp_path / "splits.csv").read_text().splitlines()[0] == "path,label,split"
    items = read_splits_csv(tmp_path / "splits.csv")
    assert [(i.path, i.label, i.split) for i in items] == [(i.path, i.label, i.split) for i in scan.items]
    assert all(item.path.is_absolute() for item in items)


def test_bad_data_folders_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        scan_dataset(tmp_path / "empty")
    make_shapes_dataset(tmp_path / "one", per_class=12, size=40)
    shutil.rmtree(tmp_path / "one" / "glass")
    shutil.rmtree(tmp_path / "one" / "plastic")
    with pytest.raises(DatasetError, match="at least two classes"):
        scan_dataset(tmp_path / "one")


def test_class_with_too_few_usable_images_stops_the_scan(tmp_path: Path) -> None:
    root = make_shapes_dataset(tmp_path / "data", per_class=12, size=40)
    for path in sorted((root / "glass").iterdir())[:5]:
        path.write_bytes(b"garbage")
    with pytest.raises(DatasetError) as info:
        scan_dataset(root, min_images=10)
    message = str(info.value)
    assert "'glass' has 7 usable images" in message and "5 skipped" in message and "\n" not in message
