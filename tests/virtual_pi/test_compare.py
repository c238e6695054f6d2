"""scripts/virtual_pi/compare.py: the virtual Pi's verdict on x86 vs arm64 simulation output.

The virtual Pi itself (scripts/virtual_pi.sh) needs root, qemu and minutes; .ci/run runs it.
These tests run real ``smartbin simulate --json`` output through the comparison.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "virtual_pi" / "compare.py"
SMARTBIN = str(Path(sys.executable).parent / "smartbin")

spec = importlib.util.spec_from_file_location("virtual_pi_compare", SCRIPT)
compare_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_module)


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulation of the bundled samples with the bundled model."""
    out = tmp_path_factory.mktemp("sim") / "here.jsonl"
    result = subprocess.run(
        [SMARTBIN, "simulate", "--fast", "--json", "--config", str(REPO / "scripts/virtual_pi/config.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    out.write_text(result.stdout)
    return out


def _moved(source: Path, dest: Path, change) -> Path:
    """The same run as if installed elsewhere (as on the Pi), with ``change`` applied to each item."""
    lines = []
    for i, line in enumerate(source.read_text().splitlines()):
        item = json.loads(line)
        item["image"] = (
            "/opt/smartbin/venv/lib/python3.11/site-packages/smartbin/device/data/samples/"
            + "/".join(Path(item["image"]).parts[-2:])
        )
        change(i, item)
        lines.append(json.dumps(item))
    dest.write_text("\n".join(lines) + "\n")
    return dest


def _run(here: Path, pi: Path, tolerance: str = "0.05") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(here), str(pi), "--tolerance", tolerance],
        capture_output=True,
        text=True,
        check=False,
    )


def test_same_labels_elsewhere_agree(here, tmp_path):
    def nudge(i: int, item: dict) -> None:
        item["scores"][item["label"]] -= 0.01 if i == 3 else 0.0

    result = _run(here, _moved(here, tmp_path / "pi.jsonl", nudge))
    assert result.returncode == 0, result.stderr
    n = len(here.read_text().splitlines())
    assert result.stdout.startswith(f"{n} photos: labels identical, largest score difference 0.010000")


def test_a_different_label_fails(here, tmp_path):
    def relabel(i: int, item: dict) -> None:
        if i == 0:
            item["label"] = "glass" if item["label"] != "glass" else "can"

    result = _run(here, _moved(here, tmp_path / "pi.jsonl", relabel))
    assert result.returncode == 1
    assert "1 labels differ" in result.stdout
    assert result.stderr.startswith("error: ") and " on the Pi" in result.stderr


def test_a_score_beyond_the_tolerance_fails(here, tmp_path):
    def shift(i: int, item: dict) -> None:
        if i == 5:
            item["scores"][item["label"]] -= 0.02

    pi = _moved(here, tmp_path / "pi.jsonl", shift)
    assert _run(here, pi, "0.03").returncode == 0
    result = _run(here, pi, "0.01")
    assert result.returncode == 1
    assert (
        "largest score difference 0.020000" in result.stderr and "above the tolerance 0.01" in result.stderr
    )


def test_missing_photos_fail(here, tmp_path):
    pi = tmp_path / "pi.jsonl"
    pi.write_text("\n".join(here.read_text().splitlines()[:-1]) + "\n")
    problems, _ = compare_module.compare(compare_module.read_items(here), compare_module.read_items(pi), 0.05)
    assert problems and problems[0].startswith("different photos")
