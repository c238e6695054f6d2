"""`smartbin run` as systemd runs it: a subprocess, sd_notify on a real socket, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import MODELS, NotifySocket, write_image

TIMEOUT = 60


def run_config(tmp_path: Path, store: Path) -> Path:
    photos = tmp_path / "photos"
    write_image(photos / "a.png", "red")
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[gpio]
pin_factory = "mock"
[camera]
kind = "folder"
source = "{photos}"
[classifier]
threads = 1
[paths]
state_dir = "{tmp_path / "state"}"
models_dir = "{store}"
"""
    )
    return path


def switch_current(store: Path, target: Path) -> None:
    (store / "next").symlink_to(target)
    os.replace(store / "next", store / "current")


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_run_notifies_systemd_reloads_on_sighup_and_stops_cleanly_on_sigterm(tmp_path, notify, copy_model):
    store = tmp_path / "models"
    store.mkdir()
    switch_current(store, copy_model("colour3-int8"))
    config = run_config(tmp_path, store)
    env = os.environ | {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000", "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    cmd = [sys.executable, "-m", "smartbin.device.cli", "run", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        ready = notify.wait_for("READY=1")
        assert "STATUS=model colour3-int8-1, 0 items" in ready.splitlines()
        notify.wait_for("WATCHDOG=1")  # every 0.1 s from the idle main loop
        notify.wait_for("WATCHDOG=1")

        status = subprocess.run(
            [sys.executable, "-m", "smartbin.device.cli", "status", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert status.returncode == 0, status.stderr
        live = json.loads(status.stdout)
        assert (live["running"], live["pid"], live["model_version"]) == (True, proc.pid, "colour3-int8-1")

        # a broken new model: refused, the old one keeps running
        broken = copy_model("colour3-int8", "broken")
        (broken / "model.tflite").write_bytes(b"\0" * 100)
        switch_current(store, broken)
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        status_line = notify.wait_for("READY=1").splitlines()[1]
        assert status_line.startswith("STATUS=model colour3-int8-1, 0 items; last reload failed at ")
        assert status_line.endswith("copy the bundle again; still running model colour3-int8-1")

        # a good one: live without a restart
        switch_current(store, copy_model("colour3-float32"))
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        assert "STATUS=model colour3-float32-1, 0 items" in notify.wait_for("READY=1").splitlines()

        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read()
    reload_failures = [line for line in log.splitlines() if "reload failed" in line]
    assert len(reload_failures) == 1
    assert (
        "keeping the running config and model colour3-int8-1" in reload_failures[0]
        and "corrupt or truncated" in reload_failures[0]
    )
    assert "Traceback" not in log
    final = json.loads((tmp_path / "state" / "status.json").read_text())
    assert (final["state"], final["model_version"]) == ("stopped", "colour3-float32-1")

    status = subprocess.run(
        [sys.executable, "-m", "smartbin.device.cli", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert status.returncode == 1 and "not running" in status.stdout


def test_run_refuses_a_model_that_does_not_fit_with_one_line(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\n[sorting.labels]\ncan = "can"\npaper = "glass"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "smartbin.device.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=os.environ | {"STATE_DIRECTORY": str(tmp_path / "state")},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("smartbin: error: ") and "has no label paper" in last
    assert "Traceback" not in result.stderr
