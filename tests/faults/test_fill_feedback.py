"""Fill sensors and feedback: a bad [fill.NAME] or [feedback] table is one line naming the key
(``smartbin config check`` and ``smartbin run`` alike), and a fill sensor that never echoes is a
fault in status, never a stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import MODELS, assert_one_line_error, run_smartbin

SENSOR = "echo = 24\ntrigger = 23\nempty_cm = 60\nfull_cm = 10\n"


def bin_config(tmp_path: Path, tables: str) -> Path:
    """A mock-pin bin with one photo, the colour test model, state under tmp_path, and ``tables``."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    assert cv2.imwrite(str(photos / "red.png"), np.full((48, 64, 3), (30, 30, 220), np.uint8))
    path = tmp_path / "config.toml"
    path.write_text(
        f'[gpio]\npin_factory = "mock"\n[camera]\nkind = "folder"\nsource = "{photos}"\n'
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n{tables}'
    )
    return path


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        (
            f"[fill.cans]\n{SENSOR}",
            "fill.cans: no compartment of that name (compartments: can, glass, plastic, other)",
        ),
        (
            "[fill.can]\necho = 24\nempty_cm = 60\nfull_cm = 10",
            "fill.can.trigger: missing; expected an integer GPIO pin 0-27",
        ),
        (
            f"[fill.can]\n{SENSOR}colour = 1",
            "fill.can.colour: unknown key (known here: echo, empty_cm, full_cm, full_percent, samples, trigger, when_full)",
        ),
        (
            f"[fill.can]\n{SENSOR}".replace("echo = 24", "echo = 17"),
            "fill.can.echo: GPIO 17 is already used by lid.pin",
        ),
        (
            f"[fill.can]\n{SENSOR}".replace("echo = 24", "echo = 23"),
            "fill.can.trigger: GPIO 23 is already used by fill.can.echo",
        ),
        (
            f"[fill.can]\n{SENSOR}".replace("full_cm = 10", "full_cm = 70"),
            "fill.can.full_cm: expected less than empty_cm (60.0): the sensor looks down, so a fuller compartment is nearer; got 70.0",
        ),
        (
            f'[fill.can]\n{SENSOR}when_full = "drop"',
            "fill.can.when_full: expected 'fallback' or 'hold', got 'drop'",
        ),
        (f"[fill.can]\n{SENSOR}samples = 0", "fill.can.samples: expected a reading count 1-25, got 0"),
        ("[fill]\ncan = 3", "fill.can: expected a table, got 3"),
        (
            "[feedback]\nready = '#00ff00'",
            "feedback: no pins; give red, green and blue (an RGB LED or three LEDs), a buzzer, or both",
        ),
        (
            "[feedback]\nred = 5\ngreen = 6",
            "feedback.blue: missing; give red, green and blue together (an RGB LED or three LEDs)",
        ),
        ("[feedback]\nbuzzer = 12", "feedback.buzzer: GPIO 12 is already used by servos.chute.pin"),
        (
            f"[fill.can]\n{SENSOR}[feedback]\nbuzzer = 24",
            "feedback.buzzer: GPIO 24 is already used by fill.can.echo",
        ),
        (
            "[feedback]\nbuzzer = 16\nready = 'green'",
            "feedback.ready: expected a colour: [r, g, b] with each 0-1, or '#rrggbb', got 'green'",
        ),
        (
            "[feedback]\nbuzzer = 16\nbeep = ['loud']",
            "feedback.beep.0: expected one of sorted, unsure, empty, full, fault, got 'loud'",
        ),
        (
            "[feedback]\nbuzzer = 16\n[feedback.compartments]\ncans = '#ffffff'",
            "feedback.compartments.cans: no compartment of that name (compartments: can, glass, plastic, other)",
        ),
        (
            "[feedback]\nbuzzer = 16\nblink = true",
            "feedback.blink: unknown key (known here: active_high, beep, beep_s, blue,",
        ),
    ],
)
def test_a_bad_table_is_one_line_naming_the_key(tmp_path, tables, message):
    result = run_smartbin("config", "check", bin_config(tmp_path, tables), timeout=60)
    assert_one_line_error(result, f"config.toml: {message}")


def test_run_refuses_a_bad_table_before_touching_a_pin(tmp_path):
    result = run_smartbin("run", "--config", bin_config(tmp_path, "[feedback]\nred = 5"), timeout=60)
    assert_one_line_error(result, "feedback.green: missing; give red, green and blue together")
    assert not (tmp_path / "state" / "status.json").exists()


def test_good_tables_are_ok(tmp_path):
    tables = (
        f"[fill.can]\n{SENSOR}[feedback]\nred = 5\ngreen = 6\nblue = 26\nbuzzer = 16\nready = [0, 0.1, 0]\n"
    )
    result = run_smartbin("config", "check", bin_config(tmp_path, tables), timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_sensor_that_never_echoes_is_a_fault_in_status_and_the_daemon_runs_on(tmp_path):
    """``smartbin run`` on mock pins: nothing answers the fill sensor's pings."""
    config = bin_config(tmp_path, f"[fill.can]\n{SENSOR}samples = 1\n[feedback]\nbuzzer = 16\n")
    status_file = tmp_path / "state" / "status.json"
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartbin.device.cli", "run", "--config", str(config)], stderr=log, text=True
    )
    try:
        deadline = time.monotonic() + 60
        status: dict = {}
        while not (status.get("fill") or {}).get("can", {}).get("error"):
            assert proc.poll() is None and time.monotonic() < deadline, "no fill fault in status.json"
            time.sleep(0.05)
            try:
                status = json.loads(status_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        assert status["fill"]["can"] == {
            "percent": None,
            "full": False,
            "distance_cm": None,
            "error": "no echo from 1 pings",
        }
        text = run_smartbin("status", "--config", config)
        assert text.returncode == 0, text.stderr  # running: a fault, not a stop
        assert "fill:     can ?" in text.stdout
        assert (
            "warning:  fill sensor of compartment can: no echo from 1 pings (echo GPIO 24, trigger GPIO 23)"
            in text.stdout
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        stderr = log.read()
        log.close()
    assert "Traceback" not in stderr, stderr
