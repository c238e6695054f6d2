"""classify, status and events from the command line."""

from __future__ import annotations

import json

import pytest

from smartbin.device.cli import main

from ..conftest import MODELS, Bin, write_image


@pytest.mark.parametrize("model", ["colour3-int8", "colour3-float32", "colour4-int8"])
def test_classify_json(tmp_path, capsys, model):
    images = [write_image(tmp_path / f"{c}.png", c) for c in ("red", "green", "blue", "black")]
    assert main(["classify", *map(str, images), "--model", str(MODELS / model), "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    labels = [r["label"] for r in results]
    assert labels[:3] == ["can", "glass", "plastic"]
    assert all(r["confidence"] > 0.9 for r in results[:3])
    if model == "colour4-int8":
        assert labels[3] == "empty"
    assert results[0]["model_version"] == f"{model}-1"
    assert set(results[0]["scores"]) >= {"can", "glass", "plastic"}


def test_classify_text_and_an_unreadable_image(tmp_path, capsys):
    red = write_image(tmp_path / "red.png", "red")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert (
        main(["classify", str(red), str(tmp_path / "bad.jpg"), "--model", str(MODELS / "colour3-int8")]) == 1
    )
    out, err = capsys.readouterr()
    assert out.startswith(f"{red}: can ")
    assert "bad.jpg: not an image" in err


def test_classify_a_missing_bundle(tmp_path, capsys):
    assert main(["classify", "x.png", "--model", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip() == f"smartbin: error: {tmp_path / 'none'}: no such model bundle"


def config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        "[lid]\nsettle_s = 0\n[sorting]\ntravel_s = 0\nhold_s = 0\n"
    )
    return path


def test_status_and_events_of_a_running_daemon(tmp_path, capsys, factory):
    from smartbin.device.config import load_config
    from smartbin.device.hardware.cameras import FolderCamera

    path = config_file(tmp_path)
    assert main(["status", "--config", str(path)]) == 1
    assert "no daemon state" in capsys.readouterr().err
    assert main(["events", "--config", str(path)]) == 1
    assert "no event log" in capsys.readouterr().err

    write_image(tmp_path / "photos" / "a.png", "red")
    write_image(tmp_path / "photos" / "b.png", "grey")
    config = load_config(path)
    camera = FolderCamera(tmp_path / "photos", frames_per_image=config.classifier.frames)
    with Bin(config, factory, camera) as b:
        b.daemon.status_interval_s = 0  # every item updates status.json at once
        b.item()
        b.item()
        assert main(["status", "--config", str(path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] is True and status["items"] == 2
        assert status["model_version"] == "colour3-int8-1"
        assert status["last_item"]["compartment"] == "other"
        assert main(["status", "--config", str(path)]) == 0
        assert "items:    2" in capsys.readouterr().out

    assert main(["events", "--config", str(path), "--json", "--limit", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["events"]) == 1 and data["events"][0]["reason"] == "low_confidence"
    assert data["totals"]["items"] == 2 and data["totals"]["by_compartment"] == {"can": 1, "other": 1}
    assert main(["events", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "-> can" in text and "2 items since" in text
    assert main(["status", "--config", str(path)]) == 1  # stopped now


def test_status_reports_a_running_bin_whose_config_broke_since_it_started(tmp_path, capsys, factory):
    from smartbin.device.config import load_config
    from smartbin.device.hardware.cameras import FolderCamera

    path = config_file(tmp_path)
    write_image(tmp_path / "photos" / "a.png", "red")
    config = load_config(path)
    with Bin(config, factory, FolderCamera(tmp_path / "photos")) as b:
        b.daemon.status_interval_s = 0
        b.item()
        path.write_text(path.read_text().replace("settle_s = 0", "settle_s = 0\npin = 'x'"))
        assert main(["status", "--config", str(path), "--json"]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)["running"] is True
        assert captured.err.startswith(
            "smartbin: warning: config.toml: lid.pin: expected an integer GPIO pin"
        )
        assert f"its status from {tmp_path / 'state'}" in captured.err
    path.write_text("not = [toml")
    assert main(["status", "--config", str(path)]) == 1  # no state directory to guess from
    assert "not valid TOML" in capsys.readouterr().err


def test_config_is_read_from_smartbin_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SMARTBIN_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["status"]) == 1
    assert "missing.toml: no such config file" in capsys.readouterr().err


def test_status_of_a_daemon_that_died_without_cleaning_up(tmp_path, capsys):
    import subprocess
    import sys

    from smartbin.device.records.state import write_status

    path = config_file(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    write_status(
        tmp_path / "state",
        {"pid": int(dead.stdout), "state": "ready", "started": "2026-11-22T10:00:00+00:00", "items": 7},
    )
    assert main(["status", "--config", str(path), "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["running"] is False
    assert "not running" in err


def test_run_with_a_camera_that_cannot_open_fails_with_one_line(tmp_path, capsys):
    import signal

    path = tmp_path / "config.toml"
    path.write_text(
        f'[camera]\nsource = "{tmp_path / "no-photos"}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        "[sorting]\ntravel_s = 0\n"
    )
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert main(["run", "--config", str(path)]) == 1
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("smartbin: error: image folder") and "does not exist" in err[-1]
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["state"] == "stopped"
