"""Configuration mistakes: ``smartbin config check FILE`` says OK only when ``smartbin run`` would
start with FILE (hardware that is absent apart), and otherwise prints one line naming the key.

Classes: values of the wrong kind, unknown keys, files that are not a config; checks across
keys (pins, angles, labels, compartments that move nothing or the same as another); paths that
cannot work on this disk; camera sources that do not fit their kind. Every case runs the real
command in a subprocess (no traceback allowed); the run cases run ``smartbin run`` too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import MODELS, assert_one_line_error, mounted_tmpfs, run_smartbin

RED = (30, 30, 220)  # BGR: "can" for the colour test models


def bin_config(tmp_path: Path, extra: str = "", *, camera: str | None = None) -> Path:
    """A mock-pin bin with a folder of one photo, the colour test model and state under
    tmp_path; ``extra`` TOML goes first (top-level keys, or tables other than these)."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    assert cv2.imwrite(str(photos / "red.png"), np.full((48, 64, 3), RED, np.uint8))
    camera = camera if camera is not None else f'[camera]\nkind = "folder"\nsource = "{photos}"\n'
    path = tmp_path / "config.toml"
    path.write_text(
        f'{extra}\n[gpio]\npin_factory = "mock"\n{camera}'
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        + ("" if "[paths]" in extra else f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    )
    return path


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return run_smartbin("config", "check", path, timeout=60)


def test_a_good_config_is_ok(tmp_path):
    result = check(bin_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "config.toml: OK (pins mock, camera folder, 2 servos, 4 compartments" in result.stdout
    assert "smartbin: warning" not in result.stderr


def test_the_example_config_is_ok_on_a_machine_without_a_bin(tmp_path):
    example = run_smartbin("config", "example").stdout
    path = tmp_path / "config.toml"
    path.write_text(example)
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "OK (pins lgpio, camera picamera2, 2 servos, 4 compartments" in result.stdout


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        (
            '[lid]\npin = "seventeen"',
            ["config.toml: lid.pin: expected an integer GPIO pin 0-27, got 'seventeen'"],
        ),
        ("[sorting]\nthreshold = -0.1", ["sorting.threshold: expected a confidence 0-1, got -0.1"]),
        ("[sorting]\nhold_s = inf", ["sorting.hold_s: expected seconds 0-30, got inf"]),
        ("[images]\nsave = 'yes'", ["images.save: expected true or false, got 'yes'"]),
        (
            "[camera.controls]\nGain = [true]",
            ["camera.controls.Gain: expected a number, true/false or a list"],
        ),
        (
            "[lid]\npins = 3",
            ["lid.pins: unknown key (known here: bounce_ms, closed_when, pin, pull_up, settle_s)"],
        ),
        ("colour = 'blue'", ["config.toml: colour: unknown key (known here: camera, classifier,"]),
        ("images = [1, 2]", ["images: expected a table, got [1, 2]"]),
        ("[servos.chute]\nmin_angle = 0", ["servos.chute.pin: missing; expected an integer GPIO pin 0-27"]),
    ],
)
def test_values_of_the_wrong_kind_and_unknown_keys(tmp_path, toml, fragments):
    assert_one_line_error(check(bin_config(tmp_path, toml)), *fragments)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (None, "no such config file; 'smartbin config example' prints one"),
        ("[lid]\npin = ", "not valid TOML"),
        (b"\xff\xfe[lid]", "cannot read the config file (not UTF-8 text)"),
        ("", "OK"),  # an empty file is the defaults
    ],
)
def test_files_that_are_not_a_config(tmp_path, text, fragment):
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    result = check(path)
    if fragment == "OK":
        assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    else:
        assert_one_line_error(result, fragment)


def test_a_folder_given_as_the_config_file(tmp_path):
    line = assert_one_line_error(check(tmp_path), "cannot read the config file (is a directory)")
    assert "Errno" not in line


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("[servos.flap]\npin = 17", ["servos.flap.pin: GPIO 17 is already used by lid.pin"]),
        (
            "[compartments.can]\nchute = -95\nflap = 60",
            ["compartments.can.chute: expected an angle between -90.0 and 90.0, got -95.0"],
        ),
        (
            "[servos.chute]\npin = 12\nhome = 100",
            ["servos.chute.home: expected an angle between -90.0 and 90.0, got 100.0"],
        ),
        (
            "[compartments.can]\narm = 10",
            ["compartments.can.arm: no servo of that name (servos: chute, flap)"],
        ),
        (
            "[sorting]\nfallback = 'bin'",
            ["sorting.fallback: expected one of the compartments (can, glass, plastic, other), got 'bin'"],
        ),
        (
            "[sorting.labels]\ncan = 'metal'",
            ["sorting.labels.can: expected a compartment (can, glass, plastic, other, none), got 'metal'"],
        ),
        (
            "[servos.arm]\npin = 5",
            ["compartments: missing; with your own [servos] give [compartments.NAME] tables too"],
        ),
        (
            "[sorting]\nfallback = 'can'",
            ["model colour3-int8-1 sends no label to compartment other"],
        ),  # the model
    ],
)
def test_checks_across_keys(tmp_path, toml, fragments):
    assert_one_line_error(check(bin_config(tmp_path, toml)), *fragments)


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        (
            "[compartments.other]\nchute = 0\nflap = 0",
            ["compartments.other: every servo stays home, so an item sent there would not move"],
        ),
        ("[compartments.other]", ["compartments.other: every servo stays home"]),
        (
            "[servos.chute]\npin = 12\nhome = 60\n[servos.flap]\npin = 13\n[compartments.can]\nchute = 60",
            ["compartments.can: every servo stays home"],  # the home is the servo's own, not 0
        ),
        (
            "[compartments.can]\nchute = 20\nflap = 60\n[compartments.glass]\nchute = 20\nflap = 60",
            ["compartments.glass: the same angles as compartment can, so both would fill one place"],
        ),
        (
            "[compartments.can]\nchute = 20\n[compartments.glass]\nchute = 20\nflap = 0",
            ["compartments.glass: the same angles as compartment can"],  # flap 0 is its home: the same
        ),
    ],
)
def test_compartments_that_move_nothing_or_the_same_as_another(tmp_path, toml, fragments):
    assert_one_line_error(check(bin_config(tmp_path, toml)), *fragments)


@pytest.mark.parametrize(
    ("paths", "fragments"),
    [
        (
            {"state_dir": "{t}/blocker"},
            ["paths.state_dir: {t}/blocker is a file, not a folder; choose another path"],
        ),
        (
            {"state_dir": "{t}/blocker/state"},
            ["paths.state_dir: cannot create {t}/blocker/state: {t}/blocker is a file"],
        ),
        (
            {"state_dir": "{t}/s", "models_dir": "{t}/blocker"},
            ["paths.models_dir: {t}/blocker is a file, not a folder"],
        ),
        (
            {"state_dir": "{t}/s", "events_db": "{t}/blocker/events.db"},
            ["paths.events_db: {t}/blocker is a file, not a folder"],
        ),
        (
            {"state_dir": "{t}/s", "events_db": "{t}/photos"},
            ["paths.events_db: {t}/photos is a folder; give the event log's file, e.g. {t}/photos/events.db"],
        ),
        (
            {"state_dir": "{t}/s", "images_dir": "{t}/blocker/x", "save": True},
            ["paths.images_dir: cannot create {t}/blocker/x: {t}/blocker is a file"],
        ),
    ],
)
def test_paths_that_cannot_work(tmp_path, paths, fragments):
    (tmp_path / "blocker").write_text("not a folder")
    save = paths.pop("save", False)
    table = "".join(f'{key} = "{value.format(t=tmp_path)}"\n' for key, value in paths.items())
    extra = f"[paths]\n{table}[images]\nsave = {str(save).lower()}\n"
    assert_one_line_error(check(bin_config(tmp_path, extra)), *(f.format(t=tmp_path) for f in fragments))


def test_photos_dir_under_a_file_is_fine_while_photos_are_not_saved(tmp_path):
    (tmp_path / "blocker").write_text("not a folder")
    extra = f'[paths]\nstate_dir = "{tmp_path / "s"}"\nimages_dir = "{tmp_path / "blocker" / "x"}"\n'
    assert check(bin_config(tmp_path, extra)).returncode == 0


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs: a folder nobody can write."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as mnt:
        yield mnt


def test_a_state_dir_this_user_cannot_write_is_a_warning(tmp_path, read_only):
    # The daemon may run as another user; one that cannot write there sorts without records.
    result = check(bin_config(tmp_path, f'[paths]\nstate_dir = "{read_only / "state"}"\n'))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("smartbin: warning:")]
    assert len(warnings) == 2, result.stderr  # state_dir and the event log's folder below it
    assert (
        f"paths.state_dir: this user (uid 0) cannot create {read_only / 'state'} (read-only file system)"
        in warnings[0]
    )


def test_a_state_dir_that_takes_no_folder_is_a_warning_even_for_root(tmp_path):
    # /proc takes no new folder, yet os.access says root may write there
    result = check(bin_config(tmp_path, '[paths]\nstate_dir = "/proc/smartbin-state"\n'))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("smartbin: warning:")]
    assert any(
        "paths.state_dir: this user" in w and "cannot create /proc/smartbin-state" in w for w in warnings
    )


@pytest.mark.parametrize(
    ("camera", "fragments"),
    [
        (
            '[camera]\nkind = "folder"\nsource = "{t}/nowhere"',
            ["camera.source: image folder {t}/nowhere does not exist"],
        ),
        ('[camera]\nkind = "folder"\nsource = "{t}/empty"', ["camera.source: no images in {t}/empty"]),
        (
            '[camera]\nkind = "folder"\nsource = 0',
            ['camera.source: expected a folder or an image file for kind = "folder", got 0'],
        ),
        (
            '[camera]\nkind = "picamera2"\nsource = "{t}/photos"',
            ['camera.source: expected a camera number such as 0 for kind = "picamera2"'],
        ),
        (
            '[camera]\nkind = "opencv"\nsource = "{t}/clip.mp4"',
            ["camera.source: video file {t}/clip.mp4 does not exist"],
        ),
        ('[camera]\nkind = "opencv"\nsource = -2', ["camera.source: expected a device index 0 or more"]),
        (
            '[camera]\nkind = "opencv"\n[camera.controls]\nAfMode = 0',
            ["camera.controls: libcamera controls apply to kind = \"picamera2\" only, not 'opencv'"],
        ),
    ],
)
def test_camera_sources_that_do_not_fit_the_kind(tmp_path, camera, fragments):
    (tmp_path / "empty").mkdir()
    path = bin_config(tmp_path, camera=camera.format(t=tmp_path) + "\n")
    assert_one_line_error(check(path), *(f.format(t=tmp_path) for f in fragments))


def test_an_absent_camera_device_is_hardware_not_config(tmp_path):
    result = check(bin_config(tmp_path, camera='[camera]\nkind = "opencv"\nsource = "/dev/video63"\n'))
    assert result.returncode == 0, result.stderr
    assert (
        "smartbin: warning: config.toml: camera.source: /dev/video63 is not there (is the camera connected?)"
        in result.stderr
    )


@pytest.mark.parametrize("source", ["{t}/nowhere", "{t}/empty"])
def test_run_refuses_the_camera_source_that_config_check_refuses(tmp_path, source):
    (tmp_path / "empty").mkdir()
    path = bin_config(tmp_path, camera=f'[camera]\nkind = "folder"\nsource = "{source.format(t=tmp_path)}"\n')
    refused = assert_one_line_error(check(path))
    run = assert_one_line_error(run_smartbin("run", "--config", path, timeout=60))
    assert refused.split("camera.source: ")[1] in run
