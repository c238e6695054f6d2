"""Pasting onto other backgrounds: ``smartbin train --paste-backgrounds`` and ``smartbin floor-set``
refuse bad input with one line and write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..training.test_cutpaste import write_sets
from .conftest import assert_one_line_error, run_smartbin


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, Path]:
    return write_sets(tmp_path, n=12)


def _nothing_written(tmp_path: Path, *inputs: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["board", "floors", *inputs])


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_train_paste_probability_out_of_range(tmp_path: Path, sets: tuple[Path, Path], value: str) -> None:
    result = run_smartbin("train", *sets, "--out", tmp_path / "run", "--paste-backgrounds", value)
    assert_one_line_error(result, f"--paste-backgrounds {value}", "from 0 (off) to 1")
    _nothing_written(tmp_path)


def test_floor_set_missing_item_set(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    result = run_smartbin("floor-set", tmp_path / "nope", sets[1], "--out", tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "nope"), "not found")
    _nothing_written(tmp_path)


def test_floor_set_missing_floor_set(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    result = run_smartbin("floor-set", sets[0], tmp_path / "nope", "--out", tmp_path / "out")
    assert_one_line_error(result, f"floor set {tmp_path / 'nope'}: no such folder", "drinking-waste")
    _nothing_written(tmp_path)


def test_floor_set_the_same_set_twice(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    result = run_smartbin("floor-set", sets[0], sets[0], "--out", tmp_path / "out")
    assert_one_line_error(result, "both the item set and the floor set")
    _nothing_written(tmp_path)


def test_floor_set_without_photos_in_the_test_split(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    empty = tmp_path / "empty"
    (empty / "can").mkdir(parents=True)
    result = run_smartbin("floor-set", sets[0], empty, "--out", tmp_path / "out")
    assert_one_line_error(result, f"floor set {empty} has no photos in its test split")
    _nothing_written(tmp_path, "empty")


def test_floor_set_whose_items_are_not_on_a_white_board(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, floors = sets
    result = run_smartbin("floor-set", floors, board, "--out", tmp_path / "out")
    assert_one_line_error(result, "could be cut out of a white board", "such as trashnet3")
    _nothing_written(tmp_path)


def test_floor_set_out_that_exists_is_kept(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_smartbin("floor-set", *sets, "--out", out, "--overwrite")
    assert_one_line_error(result, f"{out} already exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_floor_set_out_inside_the_item_set(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, floors = sets
    before = sorted(p.relative_to(board) for p in board.rglob("*"))
    result = run_smartbin("floor-set", board, floors, "--out", board / "floors")
    assert_one_line_error(result, f"--out {board / 'floors'} is inside {board}, which this command reads")
    assert sorted(p.relative_to(board) for p in board.rglob("*")) == before  # no new "class"


def test_train_out_inside_a_photo_set(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, floors = sets
    result = run_smartbin("train", board, floors, "--out", floors / "run")
    assert_one_line_error(result, f"--out {floors / 'run'} is inside {floors}")
    assert not (floors / "run").exists()
    _nothing_written(tmp_path)
