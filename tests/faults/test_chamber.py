"""Faults around the empty chamber: calibrating on bad frames or under a running daemon, and a
reference the bin cannot use (it still starts and sorts, and says so in status)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartbin.device.records.lock import StateDirLock

from .conftest import MODELS, assert_one_line_error, run_smartbin

SIZE = (120, 160)


def floor(seed: int = 0, level: int = 125) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blobs = cv2.resize(rng.normal(0, 1, (6, 8)).astype(np.float32), SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    grey = np.clip(level + 15 * blobs + rng.normal(0, 3, SIZE), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., np.newaxis], 3, axis=2)


def write(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def bin_config(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "bin.toml"
    path.write_text(
        f'[camera]\nkind = "folder"\nsource = "{source}"\n'
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    return path


@pytest.mark.parametrize(
    ("frames", "fragments"),
    [
        ([floor(i, level=12) for i in range(5)], ("frame 1 is too dark", "[light] pin")),
        ([np.full((*SIZE, 3), 255, np.uint8)] * 5, ("frame 1 is blown out", "lower the light")),
        ([floor(i % 2) for i in range(5)], ("unsteady", "keep the lid closed")),
    ],
    ids=["dark", "blown", "unsteady"],
)
def test_calibrate_refuses_bad_frames_in_one_line(tmp_path, frames, fragments):
    config = bin_config(tmp_path, write(tmp_path / "empty", frames))
    result = run_smartbin("calibrate", "--config", config)
    assert_one_line_error(result, *fragments, "calibrate again")
    assert not (tmp_path / "state" / "empty-reference.json").exists()


def test_calibrate_with_too_few_photos_is_one_line(tmp_path):
    config = bin_config(tmp_path, write(tmp_path / "empty", [floor(), floor()]))
    assert_one_line_error(run_smartbin("calibrate", "--config", config), "no more images")
    result = run_smartbin("calibrate", "--config", config, "--frames", "2")
    assert result.returncode == 2
    assert_one_line_error(result, "--frames", "must be 3 or more")


def test_calibrate_refuses_while_a_daemon_owns_the_camera(tmp_path):
    config = bin_config(tmp_path, write(tmp_path / "empty", [floor()] * 5))
    lock = StateDirLock(tmp_path / "state")
    lock.acquire()
    try:
        result = run_smartbin("calibrate", "--config", config)
    finally:
        lock.release()
    assert_one_line_error(result, "runs on", "owns the camera", "stop it")


def calibrate(tmp_path: Path) -> tuple[Path, Path]:
    """A calibrated bin: (its config, its state dir)."""
    config = bin_config(tmp_path, write(tmp_path / "empty", [floor()] * 5))
    assert run_smartbin("calibrate", "--config", config).returncode == 0
    return config, tmp_path / "state"


def sort_and_show_status(tmp_path: Path, config: Path, state: Path, frames: list[np.ndarray]) -> list[str]:
    """Simulate items on the bin's state dir; every item is classified; ``smartbin status``' lines."""
    items = write(tmp_path / "items", frames)
    result = run_smartbin(
        "simulate", "--config", config, "--images", items, "--state-dir", state, "--fast", "--json"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == len(frames) and all(e["label"] is not None for e in events)
    return run_smartbin("status", "--config", config).stdout.splitlines()  # stopped: exit 1, but it shows


def warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("warning:")]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda state: (state / "empty-reference.json").write_text("{not json"), "is corrupt (not its JSON)"),
        (
            lambda state: next(state.glob("empty-reference-*.png")).write_bytes(b"\x89PNG garbage"),
            "is corrupt (its checksum fails)",
        ),
        (lambda state: next(state.glob("empty-reference-*.png")).unlink(), "no such file or folder"),
    ],
    ids=["json", "image", "image-gone"],
)
def test_a_corrupt_reference_still_sorts_with_a_warning(tmp_path, damage, fragment):
    config, state = calibrate(tmp_path)
    damage(state)
    red = np.full((*SIZE, 3), (220, 30, 30), np.uint8)
    warnings = sort_and_show_status(
        tmp_path, config, state, [red, red]
    )  # the same frame twice: no freeze check
    assert any(fragment in w and "smartbin calibrate" in w for w in warnings), warnings


def test_a_reference_of_another_size_still_sorts_with_a_warning(tmp_path):
    config, state = calibrate(tmp_path)
    red = np.full((240, 320, 3), (220, 30, 30), np.uint8)
    lines = sort_and_show_status(tmp_path, config, state, [red])
    assert any("160x120 but the camera gives 320x240 frames" in w for w in warnings(lines)), lines


def test_without_a_reference_status_says_none_is_set(tmp_path):
    config = bin_config(tmp_path, tmp_path / "empty")
    red = np.full((*SIZE, 3), (220, 30, 30), np.uint8)
    lines = sort_and_show_status(tmp_path, config, tmp_path / "state", [red])
    assert (
        "empty:    no empty reference is set; 'smartbin calibrate' sets one (lid closed, chamber empty)"
        in lines
    )
    assert warnings(lines) == []
