"""The device side never imports TensorFlow or Keras (a Pi has neither)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "smartbin.device.daemon",
    "smartbin.device.commands.simulate",
    "smartbin.device.commands.bin",
    "smartbin.device.vision.classifier",
    "smartbin.device.config",
    "smartbin.device.records.events",
    "smartbin.device.cli",
    "smartbin.device.decision",
    "smartbin.device.hardware.lid",
    "smartbin.device.vision.model",
    "smartbin.device.home.notify",
    "smartbin.device.hardware.pins",
    "smartbin.device.hardware.sorter",
    "smartbin.device.records.state",
    "smartbin.device.home.mqtt",
    "smartbin.device.home.ha_discovery",
    "smartbin.device.commands.mqtt",
]


def test_importing_the_device_side_leaves_tensorflow_out():
    code = (
        f"import sys, {', '.join(MODULES)}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'picamera2'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_simulated_item_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from smartbin.device.cli import main\n"
        "assert main(['simulate', '--fast', '--json']) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'picamera2'))\n"
        "print(heavy, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stderr.strip().splitlines()[-1] == "[]"
