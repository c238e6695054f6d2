"""Several photo sets in one run: checks, duplicates and stable splits over all of them, and reports
(training and ``smartbin evaluate``) per set as well as overall."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartbin.device.cli import main
from smartbin.training.dataset import DatasetError, scan_dataset, write_dataset_report
from smartbin.training.synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]
COLOUR_BUNDLE = (
    REPO / "tests" / "fixtures" / "models" / "colour3-int8"
)  # red: can, green: glass, blue: plastic
CLASSES = ["can", "glass", "plastic"]


def _two_sets(root: Path, per_class: int = 12) -> tuple[Path, Path]:
    """``board`` has every class; ``floor`` has no glass (as drinking-waste beside trashnet3)."""
    board = make_shapes_dataset(root / "board", per_class=per_class, size=40, seed=1)
    floor = make_shapes_dataset(root / "floor", per_class=per_class, size=40, seed=2)
    for path in (floor / "can").iterdir():
        path.rename(path.with_name(f"floor_{path.name}"))  # the shapes datasets share file names
    for path in (floor / "plastic").iterdir():
        path.rename(path.with_name(f"floor_{path.name}"))
    shutil.rmtree(floor / "glass")
    return board, floor


def test_a_sets_fingerprint_follows_its_photos_not_where_it_lies(tmp_path: Path) -> None:
    board, floor = _two_sets(tmp_path)
    moved = Path(shutil.copytree(board, tmp_path / "elsewhere" / "board"))
    first = scan_dataset([board, floor], classes=CLASSES).fingerprint("board")
    assert first["name"] == "board" and first["images"] == 36 and len(first["sha256"]) == 64
    assert scan_dataset([moved, floor], classes=CLASSES).fingerprint("board") == first
    # A photo filed under another class, or changed, makes another data set.
    (moved / "can" / "can_001.png").rename(moved / "glass" / "can_001.png")
    relabelled = scan_dataset([moved, floor], classes=CLASSES).fingerprint("board")
    assert relabelled["images"] == 36 and relabelled["sha256"] != first["sha256"]
    Image.new("RGB", (40, 40), "white").save(moved / "can" / "can_000.png")
    assert scan_dataset([moved, floor], classes=CLASSES).fingerprint("board")["sha256"] not in {
        first["sha256"],
        relabelled["sha256"],
    }


def test_sets_scan_together_and_the_report_says_what_a_set_lacks(tmp_path: Path) -> None:
    board, floor = _two_sets(tmp_path)
    (board / "ATTRIBUTION.md").write_text("a set's licence is no photo")
    shutil.copy(floor / "can" / "floor_can_000.png", floor / "stray.png")
    scan = scan_dataset([board, floor], classes=CLASSES, val_percent=20, test_percent=20)
    assert scan.labels == CLASSES and [s.name for s in scan.sets] == ["board", "floor"]
    assert [w for w in scan.warnings if "no class folder" in w] == [
        f"1 photo(s) directly in {floor} (e.g. stray.png) are in no class folder and were ignored"
    ]
    assert len(scan.items) == 12 * 5
    assert {item.source for item in scan.items if item.path.parent.parent == floor} == {"floor"}
    assert scan.missing("floor") == ["glass"] and scan.missing("board") == []

    write_dataset_report(scan, tmp_path)
    report = json.loads((tmp_path / "dataset_report.json").read_text())
    assert report["data_dirs"] == [str(board), str(floor)]
    floor_report = report["sets"][1]
    assert floor_report["missing_classes"] == ["glass"] and floor_report["usable"] == 24
    assert sum(floor_report["counts"]["plastic"].values()) == 12
    markdown = (tmp_path / "dataset_report.md").read_text()
    assert "## Set floor" in markdown and "No photos of: glass." in markdown


def test_a_class_only_one_set_has_needs_classes(tmp_path: Path) -> None:
    board, floor = _two_sets(tmp_path)
    with pytest.raises(DatasetError) as info:
        scan_dataset([board, floor])
    message = str(info.value)
    assert "class 'glass' is only in the set 'board'" in message
    assert "--classes can,glass,plastic" in message and "\n" not in message

    (floor / "plastic").rename(floor / "Plastic")  # a typo is a class of its own: named, not trained
    with pytest.raises(DatasetError, match="class 'Plastic' is only in the set 'floor'"):
        scan_dataset([board, floor], classes=None)
    with pytest.raises(DatasetError, match="the class folder 'Plastic', which --classes"):
        scan_dataset([board, floor], classes=CLASSES)
    (floor / "Plastic").rename(floor / "plastic")
    with pytest.raises(
        DatasetError, match=r"class 'paper' has 0 usable images.* leave 'paper' out of --classes"
    ):
        scan_dataset([board, floor], classes=[*CLASSES, "paper"])


def test_duplicates_are_found_across_sets(tmp_path: Path) -> None:
    board, floor = _two_sets(tmp_path)
    shutil.copy(board / "can" / "can_000.png", floor / "can" / "copy.png")
    shutil.copy(board / "plastic" / "plastic_000.png", floor / "can" / "misfiled.png")
    scan = scan_dataset([board, floor], classes=CLASSES)
    reasons = {Path(s["path"]).name: s["reason"] for s in scan.skipped}
    assert reasons["copy.png"].startswith(f"exact duplicate of {board / 'can' / 'can_000.png'}")
    assert "more than one class" in reasons["misfiled.png"]
    assert "more than one class" in reasons["plastic_000.png"]
    assert "can_000.png" in {item.path.name for item in scan.items}


def test_adding_a_set_keeps_every_photo_in_its_split(tmp_path: Path) -> None:
    board, floor = _two_sets(tmp_path, per_class=30)
    before = {item.path: item.split for item in scan_dataset(board).items}
    after = {item.path: item.split for item in scan_dataset([board, floor], classes=CLASSES).items}
    assert len(after) == len(before) + 60
    assert {path: after[path] for path in before} == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda board, floor: [board / "glass"], "looks like a class folder, not a photo set"),
        (lambda board, floor: [board, board], "is given twice"),
        (
            lambda board, floor: [board, floor.rename(floor.parent / "x" / "board")],
            "two photo sets are named",
        ),
        (
            lambda board, floor: [board / "glass" / next((board / "glass").iterdir()).name],
            "is a file, not a folder",
        ),
        (
            lambda board, floor: [(board / "glass").rename(board / "gl\nass").parent],
            r"class folder named 'gl\\nass'; rename it without control characters",
        ),
    ],
)
def test_folders_that_are_not_sets(tmp_path: Path, make, message: str) -> None:
    board, floor = _two_sets(tmp_path)
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match=message):
        scan_dataset(make(board, floor), classes=CLASSES)


def test_cli_refuses_a_class_folder_and_a_lone_class_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board, floor = _two_sets(tmp_path)
    out = tmp_path / "run"
    assert main(["train", str(board), str(floor), "--out", str(out), "--weights", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("smartbin: error: class 'glass' is only in the set 'board'") and "\n" not in err
    assert main(["train", str(board / "can"), "--out", str(out), "--weights", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert "looks like a class folder" in err and "\n" not in err
    assert main(["train", str(board), "--out", str(out), "--classes", "can,,glass"]) == 1
    assert "--classes 'can,,glass'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))


def test_training_reports_each_set_as_well_as_overall(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from smartbin.training.synthetic import make_tiny_run

    board, floor = _two_sets(tmp_path / "data", per_class=16)
    run = make_tiny_run(
        tmp_path, data_dirs=[board, floor], classes=CLASSES, fine_tune_epochs=0, head_epochs=20
    )
    info = json.loads((run / "run.json").read_text())
    assert info["data_dirs"] == [str(board), str(floor)]
    assert sum(info["dataset"]["sets"]["floor"]["glass"].values()) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        by_source = metrics[split]["by_source"]
        assert set(by_source) == {"board", "floor"}
        assert by_source["board"]["count"] + by_source["floor"]["count"] == metrics[split]["count"]
        total = np.array(by_source["board"]["confusion"]) + np.array(by_source["floor"]["confusion"])
        assert total.tolist() == metrics[split]["confusion"]
        assert np.array(by_source["floor"]["confusion"])[1].sum() == 0  # no glass photos in floor
        assert (run / f"confusion_{split}_floor.png").is_file()
    summary = (run / "summary.md").read_text()
    assert "### floor: accuracy" in summary and "| true / predicted | can | glass | plastic |" in summary
    with open(run / "misclassified.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames[:2] == ["path", "source"]


def _photo(path: Path, rgb: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), rgb).save(path)


def test_evaluate_reports_each_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    colours = {"can": (220, 30, 30), "glass": (30, 220, 30), "plastic": (30, 30, 220)}
    for label, rgb in colours.items():
        for i in range(3):
            _photo(tmp_path / "board" / label / f"{i}.png", rgb)
    for label in ("can", "plastic"):
        for i in range(2):
            _photo(tmp_path / "floor" / label / f"{i}.png", colours[label])
    _photo(tmp_path / "floor" / "plastic" / "red.png", colours["can"])  # one mistake, in floor only
    out = tmp_path / "report"
    argv = [
        "evaluate",
        str(COLOUR_BUNDLE),
        str(tmp_path / "board"),
        str(tmp_path / "floor"),
        "--out",
        str(out),
    ]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 14 and report["accuracy"] == pytest.approx(13 / 14)
    board, floor = report["by_source"]["board"], report["by_source"]["floor"]
    assert (board["images"], board["accuracy"]) == (9, 1.0)
    assert (floor["images"], floor["accuracy"]) == (5, pytest.approx(4 / 5))
    assert floor["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [1, 0, 2]]
    assert report["misclassified"][0]["source"] == "floor"
    assert (out / "confusion_matrix_floor.png").is_file()
    assert main(argv) == 0
    assert "floor: accuracy 80.0% on 5 images" in capsys.readouterr().out
