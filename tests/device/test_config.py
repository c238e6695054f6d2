"""Config validation: defaults run the simulation; every error names its key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.commands.config_check import check_paths
from smartbin.device.config import (
    EXAMPLE_CONFIG,
    Config,
    default_config_path,
    load_config,
    parse_config,
)
from smartbin.device.errors import ConfigError
from smartbin.device.hardware.settings import FillConfig, ServoConfig
from smartbin.device.records.lock import StateDirLock, shared_paths


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
            '[feedback]\nbeep = "sorted"',
            "feedback.beep: expected a list, each one of sorted, unsure, empty, full, fault, got 'sorted'",
        ),
        (
            "[compartments.can]\nchute = 500",
            "compartments.can.chute: expected an angle in degrees, -360 to 360",
        ),
        ("[images]\nmax_mb = 1e300", "images.max_mb: expected megabytes, 0.1 to 1000000, got 1e+300"),
        (
            '[camera.controls]\nAfMode = "manual"',
            "camera.controls.AfMode: expected a number, true/false or a list of numbers, got 'manual'",
        ),
        (
            '[camera]\nkind = "opencv"\n[camera.controls]\nAfMode = 0',
            'camera.controls: libcamera controls apply to kind = "picamera2" only',
        ),
        ("[lid\npin = 1", "not valid TOML"),
        ("[lid]\npin = 12", "servos.chute.pin: GPIO 12 is already used by lid.pin"),  # the default servos
        (
            "[servos.chute]\npin = 12\n[servos.flap]\npin = 12",
            "servos.flap.pin: GPIO 12 is already used by servos.chute.pin",
        ),
        ('source = "x"', "config.toml: source: unknown key (known here: camera, classifier, compartments,"),
        ('[servos.arm]\npin = 5\nname = "x"', "servos.arm.name: unknown key (known here: home, max_angle,"),
        ("[servos.arm]\nhome = 5", "servos.arm.pin: missing; expected an integer GPIO pin 0-27"),
        ("[servos]", "servos: expected one table per servo, such as [servos.chute], got {}"),
        ("[sorting]\nthreshold = nan", "sorting.threshold: expected a confidence 0-1, got nan"),
        ("[sorting]\nthreshold = true", "sorting.threshold: expected a confidence 0-1, got True"),
        ('[sorting]\nfallback = " "', "sorting.fallback: expected a compartment name, got ' '"),
        ("[paths]\nstate_dir = 3", "paths.state_dir: expected a path or '', got 3"),
        ("compartments = 3", "compartments: expected a table, got 3"),
        (
            "[compartments.can]\nchute = 0\nflap = 0",
            "compartments.can: every servo stays home, so an item sent there would not move",
        ),
        ("[compartments.can]", "compartments.can: every servo stays home"),  # unnamed servos stay home
        (
            "[compartments.can]\nchute = -60\n[compartments.other]\nchute = -60\nflap = 0",
            "compartments.other: the same angles as compartment can, so both would fill one place",
        ),
        (
            '[camera]\nkind = "folder"\nsource = 0',
            'camera.source: expected a folder or an image file for kind = "folder", got 0',
        ),
        (
            '[camera]\nkind = "picamera2"\nsource = "/dev/video0"',
            "camera.source: expected a camera number such as 0 for kind = \"picamera2\" (or ''), got '/dev/video0'",
        ),
        ('[camera]\nkind = "opencv"\nsource = -1', "camera.source: expected a device index 0 or more"),
        ("[camera]\nsource = 1.5", "camera.source: expected a path, a device index or '', got 1.5"),
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


def test_configs_are_frozen_and_copies_are_validated_again():
    config = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lid.pin = 5  # type: ignore[misc]
    copy = dataclasses.replace(config, lid=dataclasses.replace(config.lid, settle_s=0))
    assert copy.lid.settle_s == 0.0 and copy.servos == config.servos and copy.sorting == config.sorting
    with pytest.raises(ValueError, match=r"already used by lid\.pin"):
        dataclasses.replace(config, lid=dataclasses.replace(config.lid, pin=12))


def test_labels_and_compartments_default_only_where_they_fit(tmp_path):
    custom = parse_config(
        {
            "servos": {"arm": {"pin": 5}},
            "compartments": {
                "can": {"arm": -45},
                "glass": {"arm": 45},
                "plastic": {"arm": 90},
                "other": {"arm": -90},
            },
        }
    )
    assert custom.sorting.labels == {
        **{"can": "can", "glass": "glass", "plastic": "plastic", "empty": "none"},
        **{"cardboard": "other", "paper": "other", "trash": "other"},  # the rest: the fallback
    }
    with pytest.raises(ConfigError, match=r"sorting\.labels: missing; map each label"):
        parse_config(
            {
                "servos": {"arm": {"pin": 5}},
                "compartments": {"left": {"arm": 45}},
                "sorting": {"fallback": "left"},
            }
        )


def section_keys() -> dict[str, set[str]]:
    """The schema's tables (as written in the file) and their keys."""

    def keys(table: type) -> set[str]:
        return {f.name for f in dataclasses.fields(table) if f.metadata.get("in_file", True)}

    sections = {}
    for f in dataclasses.fields(Config):
        if not f.metadata.get("in_file", True):
            continue
        table = {"servos": ServoConfig, "fill": FillConfig}.get(f.name, f.type)
        sections[f.name] = keys(table) if dataclasses.is_dataclass(table) else set()
    return sections


def test_the_docs_and_the_example_config_name_every_key():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "device.md").read_text()
    reference = docs.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    example = EXAMPLE_CONFIG.read_text()
    for section, keys in section_keys().items():
        heading = (
            f"### `[{section}]`"
            if section not in ("servos", "compartments", "fill")
            else f"### `[{section}.NAME]`"
        )
        assert heading in reference, heading
        text = reference.split(heading, 1)[1].split("\n### ", 1)[0]
        for key in keys:
            assert f"`{key}`" in text or f"`[{section}.{key}]`" in text, (
                f"{section}.{key} not in docs/device.md"
            )
            assert f"\n{key} =" in example or f"\n# {key} =" in example or f"[{section}.{key}]" in example, (
                f"{section}.{key} not in {EXAMPLE_CONFIG.name}"
            )


@pytest.mark.parametrize("value", [[1], {"a": {}}])
def test_every_key_names_itself_when_its_value_is_of_the_wrong_kind(value):
    for section, keys in section_keys().items():
        for key in keys:
            if section == "servos":
                data, path = (
                    {"servos": {"chute": {"pin": 12, key: value}, "flap": {"pin": 13}}},
                    f"servos.chute.{key}",
                )
            elif section == "fill":
                sensor = {"echo": 23, "trigger": 24, "empty_cm": 60, "full_cm": 10}
                data, path = {"fill": {"can": {**sensor, key: value}}}, f"fill.can.{key}"
            else:
                data, path = {section: {key: value}}, f"{section}.{key}"
            with pytest.raises(ConfigError) as err:
                parse_config(data, where="f")
            assert str(err.value).startswith(f"f: {path}") and ": expected " in str(err.value), str(err.value)


# --- check_paths: what only the file system can tell ----------------------------------------


def paths_config(tmp_path: Path, **paths: str) -> Config:
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    (photos / "a.png").write_bytes(b"")
    return parse_config(
        {"camera": {"source": str(photos)}, "paths": {"state_dir": str(tmp_path / "state"), **paths}}
    )


def test_check_paths_accepts_folders_it_can_create(tmp_path):
    assert check_paths(paths_config(tmp_path)) == []
    assert not (tmp_path / "state").exists()  # a check creates nothing


@pytest.mark.parametrize(
    ("make", "paths", "message"),
    [
        ("state", {}, "paths.state_dir: {t}/state is a file, not a folder; choose another path"),
        (
            "blocker",
            {"state_dir": "{t}/blocker/state"},
            "paths.state_dir: cannot create {t}/blocker/state: {t}/blocker is a file; choose another path",
        ),
        (
            "blocker",
            {"models_dir": "{t}/blocker/models"},
            "paths.models_dir: cannot create {t}/blocker/models: {t}/blocker is a file; choose another path",
        ),
        (
            "blocker",
            {"events_db": "{t}/blocker/db/events.db"},
            "paths.events_db: cannot create {t}/blocker/db: {t}/blocker is a file; choose another path",
        ),
    ],
)
def test_check_paths_refuses_a_file_where_a_folder_must_be(tmp_path, make, paths, message):
    (tmp_path / make).write_text("a file")
    config = paths_config(tmp_path, **{k: v.format(t=tmp_path) for k, v in paths.items()})
    with pytest.raises(ConfigError) as err:
        check_paths(config)
    assert str(err.value) == f"config: {message.format(t=tmp_path)}"


def test_check_paths_warns_of_an_event_log_another_bin_uses(tmp_path):
    """Two bins with their own state directories but one events_db interleave one log. The lock
    that stops the second daemon names the first one's state directory, so config check warns
    while the other bin runs and after it stopped, and stays quiet for the bin's own log."""
    shared = str(tmp_path / "shared" / "events.db")
    (tmp_path / "other").mkdir()
    (tmp_path / "mine").mkdir()
    other = paths_config(tmp_path / "other", events_db=shared)
    mine = paths_config(tmp_path / "mine", events_db=shared)
    assert check_paths(mine) == []  # nobody has used it yet
    lock = StateDirLock(other.paths.state_dir, shared_paths(other.paths, other.images))
    lock.acquire()
    try:
        running = check_paths(mine)
        assert check_paths(other) == []  # its own log
    finally:
        lock.release()
    stopped = check_paths(mine)
    assert running == [
        f"config: paths.events_db: {shared} is also used by the bin with state directory "
        f"{other.paths.state_dir} (running, pid {os.getpid()}); two bins on one paths.events_db mix "
        "their records, so give each bin its own paths.events_db"
    ]
    assert stopped == [running[0].replace(f"(running, pid {os.getpid()})", "(not running now)")]


def test_check_paths_refuses_an_event_log_that_is_a_folder(tmp_path):
    (tmp_path / "state" / "events.db").mkdir(parents=True)
    with pytest.raises(
        ConfigError, match=r"paths\.events_db: .*/state/events\.db is a folder; give the event log's file"
    ):
        check_paths(paths_config(tmp_path))


def test_the_images_dir_matters_only_when_photos_are_saved(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    config = paths_config(tmp_path, images_dir=str(tmp_path / "blocker" / "images"))
    assert check_paths(config) == []
    with pytest.raises(
        ConfigError, match=r"paths\.images_dir: cannot create .*/images: .*/blocker is a file"
    ):
        check_paths(dataclasses.replace(config, images=dataclasses.replace(config.images, save=True)))


def test_check_paths_checks_the_camera_source_on_disk(tmp_path):
    config = paths_config(tmp_path)
    camera = config.camera
    for source, message in [
        (tmp_path / "nowhere", "camera.source: image folder .*/nowhere does not exist"),
        (tmp_path / "state", "camera.source: no images in .*/state"),
    ]:
        (tmp_path / "state").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match=message):
            check_paths(dataclasses.replace(config, camera=dataclasses.replace(camera, source=str(source))))
    opencv = dataclasses.replace(camera, kind="opencv", source=str(tmp_path / "clip.mp4"))
    with pytest.raises(ConfigError, match=r"camera\.source: video file .*/clip\.mp4 does not exist"):
        check_paths(dataclasses.replace(config, camera=opencv))
    absent = dataclasses.replace(camera, kind="opencv", source="/dev/video63")  # hardware: a warning
    assert check_paths(dataclasses.replace(config, camera=absent)) == [
        "config: camera.source: /dev/video63 is not there (is the camera connected?)"
    ]


def test_config_check_refuses_what_check_paths_refuses(tmp_path, capsys):
    (tmp_path / "state").write_text("a file")
    path = write(tmp_path, f'[paths]\nstate_dir = "{tmp_path / "state"}"')
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"smartbin: error: config.toml: paths.state_dir: {tmp_path}/state is a file, not a folder; choose another path"
    )


# --- check_web: a review page that will show no photos or take no relabels --------------------


def test_check_web_says_what_the_review_page_will_lack(tmp_path, capsys):
    from smartbin.device.commands.config_check import check_web
    from smartbin.device.home.web.token import create_token

    state = tmp_path / "state"
    assert check_web(load_config(write(tmp_path, f'[paths]\nstate_dir = "{state}"'))) == []  # no page
    path = write(tmp_path, f'[paths]\nstate_dir = "{state}"\n[web]\nlisten = "127.0.0.1:8080"')
    assert check_web(load_config(path)) == [
        "config.toml: web.listen is set but images.save is false: the review page will show no photos; "
        "set save = true in [images]",
        f"config.toml: web.listen is set but there is no token file {state / 'web-token'} yet: the review "
        f"page will accept no relabels; 'smartbin web token --config {path}' makes one (run it as the "
        "daemon's user)",
    ]
    assert main(["web", "token", "--config", str(path)]) == 0  # what the warning says to run
    path.write_text(path.read_text() + "\n[images]\nsave = true\n")
    assert check_web(load_config(path)) == []
    (state / "web-token").chmod(0o644)
    (warning,) = check_web(load_config(path))
    assert warning.startswith("config.toml: web.token_file: the review page will accept no relabels: ")
    assert "too open" in warning
    (state / "web-token").unlink()
    create_token(state / "web-token")
    capsys.readouterr()
    main(["config", "check", str(path)])
    assert "warning" not in capsys.readouterr().err


# --- check_updates: updates the bin could never check, or that would never go live -------------


def test_check_updates_refuses_a_missing_or_wrong_root_and_warns_of_a_pinned_model(tmp_path, capsys):
    from smartbin.device.commands.config_check import check_updates

    root = tmp_path / "fleet-root.json"
    text = f'[updates]\nurl = "https://updates.example.org"\nroot = "{root}"\n'
    assert check_updates(load_config(write(tmp_path, ""))) == []  # no updates

    assert main(["config", "check", str(write(tmp_path, text))]) == 1
    assert capsys.readouterr().err.strip() == (
        f"smartbin: error: config.toml: updates.root: {root}: no such file or folder; copy the fleet "
        "repository's metadata/root.json there (smartbin fleet init wrote it)"
    )
    root.write_text('{"signed": {"_type": "targets"}}')
    with pytest.raises(ConfigError, match=r"updates\.root: .* is not a TUF root\.json; copy the fleet"):
        check_updates(load_config(write(tmp_path, text)))
    root.write_text('{"signed": {"_type": "root"}, "signatures": []}')
    assert check_updates(load_config(write(tmp_path, text))) == []
    pinned = load_config(write(tmp_path, text + '[classifier]\nmodel = "/opt/model"\n'))
    assert check_updates(pinned) == [
        "config.toml: classifier.model pins the bin to /opt/model, so the updates it fetches never go live; "
        "remove it to run the model store's current model"
    ]
