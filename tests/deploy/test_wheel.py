"""The wheel `smartbin bootstrap` ships to a bin carries everything the bin needs to run out of the box."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from smartbin.deploy.bootstrap import build_wheel

REPO = Path(__file__).resolve().parents[2]


def test_wheel_holds_the_default_model_samples_and_example_config(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)  # pip fetches the build backend (setuptools) like any pip install
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "smartbin/device/data/"
    for name in ("model.tflite", "manifest.json", "labels.txt"):
        assert data + "default-model/" + name in names
    samples = {n for n in names if n.startswith(data + "samples/") and n.endswith(".jpg")}
    assert len(samples) == len(list((REPO / "device/data/samples").glob("*/*.jpg"))) == 18
    assert data + "config.example.toml" in names
    assert "smartbin/device/cli.py" in names and "smartbin/deploy/bootstrap_remote.py" in names
    assert "smartbin/device/updates/tuf_source.py" in names  # the bin's signed updates
    manifest = json.loads(zipfile.ZipFile(wheel).read(data + "default-model/manifest.json"))
    assert (
        manifest["size_bytes"]
        == zipfile.ZipFile(wheel).getinfo(data + "default-model/model.tflite").file_size
    )
    assert not any(n.startswith(("tests/", "runs/")) for n in names)
