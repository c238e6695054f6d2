"""Config validation: defaults run the simulation; every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.config import EXAMPLE_CONFIG, default_config_path, load_config, parse_config
from smartbin.device.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_run_the_simulation():
    config = load_config(None)
    assert config.gpio.pin_factory == "mock"
    assert config.camera.kind == "folder" and config.camera.source is None
    assert config.classifier.model is None
    assert set(config.compartments) == {"can", "glass", "plastic", "other"}
    assert config.sorting.fallback == "other"
    assert config.sorting.labels["empty"] == "none"


def test_the_example_config_is_valid_and_describes_a_real_bin():
    config = load_config(EXAMPLE_CONFIG)
    assert config.gpio.pin_factory == "lgpio"
    assert config.camera.kind == "picamera2"
    assert config.paths.models_dir == Path("/var/lib/smartbin/models")
    assert [s.name for s in config.servos] == ["chute", "flap"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[servos.chute]\npin = "x"',
            "config.toml: servos.chute.pin: expected an integer GPIO pin 0-27, got 'x'",
        ),
        ("[servos.chute]\npin = 40", "servos.chute.pin: expected an integer GPIO pin 0-27, got 40"),
        ("[lid]\npin = 17\ncolour = 1", "config.toml: lid.colour: unknown key"),
        ("speed = 3", "config.toml: speed: unknown key"),
        (
            '[gpio]\npin_factory = "magic"',
            "gpio.pin_factory: expected one of mock, lgpio, rpigpio, pigpio, native, got 'magic'",
        ),
        ("[sorting]\nthreshold = 1.5", "sorting.threshold: expected a confidence 0-1, got 1.5"),
        (
            '[sorting]\nfallback = "paper"',
            "sorting.fallback: expected one of the compartments (can, glass, plastic, other), got 'paper'",
        ),
        (
            '[sorting.labels]\ncan = "metal"',
            "sorting.labels.can: expected a compartment (can, glass, plastic, other, none), got 'metal'",
        ),
        (
            "[compartments.can]\nwheel = 10",
            "compartments.can.wheel: no servo of that name (servos: chute, flap)",
        ),
        (
            "[compartments.can]\nchute = 120",
            "compartments.can.chute: expected an angle between -90.0 and 90.0, got 120.0",
        ),
        ("[servos.chute]\npin = 17", "servos.chute.pin: GPIO 17 is already used by lid.pin"),
        (
            "[servos.chute]\npin = 12\nmin_pulse_ms = 2.5\nmax_pulse_ms = 1.0",
            "servos.chute.max_pulse_ms: expected more than min_pulse_ms",
        ),
        ("[lid]\npull_up = 1", "lid.pull_up: expected true or false, got 1"),
        ("[classifier]\nframes = 0", "classifier.frames: expected a frame count 1-50, got 0"),
        ("lid = 3", "lid: expected a table, got 3"),
        (
            '[camera.controls]\nAfMode = "manual"',
            "camera.controls.AfMode: expected a number, true/false or a list of numbers, got 'manual'",
        ),
        (
            '[camera]\nkind = "opencv"\n[camera.controls]\nAfMode = 0',
            'camera.controls: libcamera controls apply to kind = "picamera2" only',
        ),
        ("[lid\npin = 1", "not valid TOML"),
    ],
)
def test_errors_name_the_key_and_the_problem(tmp_path, toml, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, toml))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_compartment_no_label_reaches_is_refused_at_check(tmp_path, capsys):
    path = write(tmp_path, '[sorting]\nfallback = "glass"')  # nothing goes to "other" any more
    assert main(["config", "check", str(path)]) == 1
    assert "sends no label to compartment other" in capsys.readouterr().err


def test_camera_controls_for_the_pi_camera(tmp_path):
    config = load_config(
        write(
            tmp_path,
            '[camera]\nkind = "picamera2"\n[camera.controls]\nAfMode = 0\nLensPosition = 4.0\nScalerCrop = [0, 0, 640, 480]',
        )
    )
    assert config.camera.controls == {"AfMode": 0, "LensPosition": 4.0, "ScalerCrop": (0, 0, 640, 480)}


def test_servos_without_compartments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="compartments: missing"):
        load_config(write(tmp_path, "[servos.arm]\npin = 5"))


def test_a_custom_bin(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
[servos.arm]
pin = 5
min_angle = 0
max_angle = 180
home = 90
[compartments.left]
arm = 0
[compartments.right]
arm = 180
[sorting]
fallback = "right"
[sorting.labels]
can = "left"
glass = "right"
plastic = "right"
[paths]
state_dir = "state"
[camera]
kind = "folder"
source = "photos"
""",
        )
    )
    assert config.compartments == {"left": {"arm": 0.0}, "right": {"arm": 180.0}}
    assert config.paths.state_dir == tmp_path / "state"  # relative to the config file
    assert config.paths.events_db == tmp_path / "state" / "events.db"
    assert config.paths.models_dir == tmp_path / "state" / "models"
    assert config.camera.source == str(tmp_path / "photos")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"no such config file; 'smartbin config example'"):
        load_config(tmp_path / "nope.toml")


def test_default_config_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SMARTBIN_CONFIG", str(tmp_path / "c.toml"))
    assert default_config_path() == tmp_path / "c.toml"


def test_state_dir_defaults_to_systemds_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert parse_config({}).paths.events_db == tmp_path / "events.db"


def test_config_check_command(tmp_path, capsys):
    good = write(tmp_path, "[sorting]\nthreshold = 0.8")
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, "[lid]\npin = 99")
    assert main(["config", "check", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == (
        "smartbin: error: config.toml: lid.pin: expected an integer GPIO pin 0-27, got 99"
    )


def test_config_example_command_prints_a_valid_file(tmp_path, capsys):
    assert main(["config", "example"]) == 0
    parse_config(__import__("tomllib").loads(capsys.readouterr().out), base=tmp_path)
