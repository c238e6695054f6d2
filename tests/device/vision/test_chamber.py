"""The empty chamber: the reference, the comparison, capture checks, calibrate, and the daemon's step."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartbin.device import decision
from smartbin.device.cli import main
from smartbin.device.config import parse_config
from smartbin.device.errors import SmartbinError
from smartbin.device.hardware.cameras import Camera, FolderCamera
from smartbin.device.records.events import EventLog, ItemEvent
from smartbin.device.vision.chamber import (
    Chamber,
    Reference,
    capture_fault,
    crop_box,
    load_reference,
    median_frame,
    save_reference,
)
from smartbin.device.vision.settings import EmptyConfig

from ..conftest import MODELS, Bin, fast_config

SIZE = (240, 320)  # (height, width) of the synthetic scenes
ITEM = (200, 80, 64, 72)  # (x, y, width, height) of the item in the item scenes


def background(seed: int = 0) -> np.ndarray:
    """A grey, low-contrast textured floor (the colour models find grey unsure)."""
    rng = np.random.default_rng(seed)
    blobs = cv2.resize(
        rng.normal(0, 1, (12, 16)).astype(np.float32), SIZE[::-1], interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0, 6, SIZE).astype(np.float32)
    grey = np.clip(125 + 12 * blobs + grain, 0, 255)
    return np.repeat(grey[..., np.newaxis], 3, axis=2).astype(np.uint8)


def with_item(scene: np.ndarray, colour=(220, 30, 30)) -> np.ndarray:
    x, y, w, h = ITEM
    out = scene.copy()
    cv2.ellipse(out, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
    return out


def camera_view(scene: np.ndarray, rng: np.random.Generator, *, noise=3.0, gain=1.0, shift=0.0) -> np.ndarray:
    moved = cv2.warpAffine(
        scene, np.float32([[1, 0, shift], [0, 1, -shift]]), SIZE[::-1], borderMode=cv2.BORDER_REFLECT
    )
    out = moved.astype(np.float32) * gain + rng.normal(0, noise, scene.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def calibrated(scene: np.ndarray, rng: np.random.Generator) -> Reference:
    return Reference(median_frame([camera_view(scene, rng) for _ in range(5)]))


CONFIG = EmptyConfig()


@pytest.mark.parametrize(
    "view",
    [
        {},
        {"noise": 6.0},
        {"gain": 0.85},
        {"gain": 1.15},
        {"shift": 2.0},
        {"gain": 0.9, "shift": 1.0, "noise": 5.0},
    ],
    ids=["noise", "more-noise", "darker", "brighter", "shifted-2px", "all-at-once"],
)
def test_an_empty_chamber_is_empty_through_noise_light_and_small_shifts(view):
    rng = np.random.default_rng(1)
    scene = background()
    reference = calibrated(scene, rng)
    change = reference.compare(camera_view(scene, rng, **view), CONFIG.threshold)
    assert change.area < CONFIG.min_area and change.box is None


@pytest.mark.parametrize(
    "colour", [(220, 30, 30), (170, 170, 170), (80, 80, 80)], ids=["red", "light-grey", "dark-grey"]
)
@pytest.mark.parametrize("view", [{}, {"gain": 0.85, "shift": 2.0}], ids=["as-calibrated", "light-and-shift"])
def test_an_item_is_found_and_boxed(colour, view):
    rng = np.random.default_rng(2)
    scene = background()
    reference = calibrated(scene, rng)
    change = reference.compare(camera_view(with_item(scene, colour), rng, **view), CONFIG.threshold)
    assert change.area >= CONFIG.min_area
    x, y, w, h = change.box
    ix, iy, iw, ih = ITEM
    # the box holds the item, give or take the working size's pixels (2 px here) and the shift
    assert abs(x - ix) <= 6 and abs(y - iy) <= 6 and abs(w - iw) <= 10 and abs(h - ih) <= 10


def test_a_plain_item_on_fine_stripes_of_its_own_mean_colour_is_found():
    rng = np.random.default_rng(20)
    stripes = np.zeros((*SIZE, 3), np.uint8)
    stripes[(np.arange(SIZE[0])[:, np.newaxis] + np.arange(SIZE[1])) % 4 < 2] = (200, 170, 60)
    stripes[(np.arange(SIZE[0])[:, np.newaxis] + np.arange(SIZE[1])) % 4 >= 2] = (40, 40, 90)
    mean = tuple(int(v) for v in stripes.reshape(-1, 3).mean(axis=0))
    reference = calibrated(stripes, rng)
    assert reference.compare(camera_view(stripes, rng, shift=1.0), CONFIG.threshold).box is None
    change = reference.compare(camera_view(with_item(stripes, mean), rng), CONFIG.threshold)
    assert change.area >= CONFIG.min_area and change.box is not None


def test_capture_faults():
    rng = np.random.default_rng(3)
    frame = camera_view(background(), rng)
    assert capture_fault(frame, None) is None
    assert capture_fault(np.zeros_like(frame), None) == "black"
    assert capture_fault(np.full_like(frame, 8), None) == "black"  # a covered lens still has some noise
    assert capture_fault(np.full_like(frame, 255), None) == "blown"
    assert capture_fault(frame, frame.copy()) == "frozen"
    assert capture_fault(frame, camera_view(background(), rng)) is None  # noise makes every frame new
    dark = np.clip(frame.astype(int) // 4, 0, 255).astype(np.uint8)  # dim, but not black
    assert capture_fault(dark, None) is None


def test_crop_box_grows_the_item_towards_a_square_inside_the_frame():
    rows, cols = crop_box((10, 20, 40, 20), (240, 320, 3), margin=0.25)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (60, 60)
    assert cols.start == 0  # pushed inside the frame, not cut
    rows, cols = crop_box((0, 100, 320, 40), (240, 320, 3))  # wider than the frame is high
    assert (cols.start, cols.stop) == (0, 320) and rows.stop - rows.start == 240


# --- the reference on disk -----------------------------------------------------------------


def test_save_and_load_a_reference(tmp_path):
    rng = np.random.default_rng(4)
    frames = [camera_view(background(), rng) for _ in range(5)]
    camera = parse_config({}).camera
    path = save_reference(tmp_path, frames, camera, CONFIG)
    image, meta = load_reference(tmp_path)
    assert np.array_equal(image, median_frame(frames))
    assert meta["camera"] == {"kind": "folder"} and meta["frames"] == 5
    assert meta["frame"] == {"width": 320, "height": 240}
    assert 100 < meta["stats"]["mean"] < 150
    first_image = tmp_path / meta["image"]
    # a new calibration replaces the pair and removes the old image
    save_reference(tmp_path, [camera_view(background(1), rng) for _ in range(5)], camera, CONFIG)
    assert not first_image.exists()
    assert sorted(p.name for p in tmp_path.iterdir())[1] == path.name
    assert len(list(tmp_path.glob("empty-reference-*.png"))) == 1


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        (lambda rng: [np.full((*SIZE, 3), 10, np.uint8)] * 5, "too dark"),
        (lambda rng: [np.full((*SIZE, 3), 255, np.uint8)] * 5, "blown out"),
        (lambda rng: [camera_view(background(i % 2), rng) for i in range(5)], "unsteady"),
        (
            lambda rng: [camera_view(background(), rng) for _ in range(4)] + [with_item(background())],
            "unsteady",
        ),
    ],
    ids=["dark", "blown", "two-scenes", "a-hand-in-one-frame"],
)
def test_calibration_refuses_bad_frames_and_keeps_the_old_reference(tmp_path, frames, why):
    rng = np.random.default_rng(5)
    camera = parse_config({}).camera
    save_reference(tmp_path, [camera_view(background(), rng) for _ in range(5)], camera, CONFIG)
    before = (tmp_path / "empty-reference.json").read_text()
    with pytest.raises(SmartbinError, match=why):
        save_reference(tmp_path, frames(rng), camera, CONFIG)
    assert (tmp_path / "empty-reference.json").read_text() == before


def test_a_reference_taken_with_other_camera_settings_is_not_used(tmp_path):
    rng = np.random.default_rng(6)
    usb = parse_config({"camera": {"kind": "opencv", "width": 640, "height": 480}}).camera
    save_reference(tmp_path, [camera_view(background(), rng) for _ in range(3)], usb, CONFIG)
    assert Chamber(tmp_path, CONFIG, usb).reference is not None
    other = parse_config({"camera": {"kind": "opencv", "width": 1280, "height": 720}}).camera
    chamber = Chamber(tmp_path, CONFIG, other)
    assert chamber.reference is None
    assert "opencv 640x480" in chamber.warnings()[0] and "calibrate" in chamber.warnings()[0]


# --- calibrate -----------------------------------------------------------------------------


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def config_file(tmp_path: Path, source: Path, **sections: str) -> Path:
    path = tmp_path / "bin.toml"
    extra = "".join(f"\n[{name}]\n{body}\n" for name, body in sections.items())
    path.write_text(
        f'[camera]\nkind = "folder"\nsource = "{source}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n{extra}'
    )
    return path


def test_calibrate_takes_the_next_photos_of_a_folder_camera(tmp_path, capsys):
    rng = np.random.default_rng(7)
    source = write_frames(tmp_path / "empty", [camera_view(background(), rng) for _ in range(6)])
    assert main(["calibrate", "--config", str(config_file(tmp_path, source))]) == 0
    out = capsys.readouterr().out
    assert "empty reference stored" in out and "5 frames 320x240 from folder" in out
    meta = json.loads((tmp_path / "state" / "empty-reference.json").read_text())
    assert meta["frames"] == 5 and meta["camera"] == {"kind": "folder"}


def test_calibrate_switches_the_light_on_for_the_frames(tmp_path, monkeypatch):
    from gpiozero.pins.mock import MockFactory

    from smartbin.device.commands import chamber as chamber_commands

    factory = MockFactory()
    monkeypatch.setattr("smartbin.device.hardware.pins.make_pin_factory", lambda name: factory)
    seen = []
    capture = FolderCamera.capture

    def recording(camera):
        seen.append(factory.pin(22).state)
        return capture(camera)

    monkeypatch.setattr(FolderCamera, "capture", recording)
    rng = np.random.default_rng(8)
    source = write_frames(tmp_path / "empty", [camera_view(background(), rng) for _ in range(5)])
    config = config_file(tmp_path, source, light="pin = 22")
    assert chamber_commands is not None and main(["calibrate", "--config", str(config)]) == 0
    assert seen == [True] * 5
    assert factory.pin(22).state is False


# --- the daemon's step -----------------------------------------------------------------------


@pytest.fixture
def scene_bin(factory, tmp_path):
    """scene_bin(*frames, reference=True, **config sections) -> a Bin whose folder camera shows the
    frames, with an empty reference calibrated from the background when ``reference``."""

    def make(*frames: np.ndarray, reference: bool = True, **sections) -> Bin:
        config = fast_config(tmp_path, classifier={"frames": 1, **sections.pop("classifier", {})}, **sections)
        rng = np.random.default_rng(9)
        if reference:
            calibration = [camera_view(background(), rng) for _ in range(5)]
            save_reference(config.paths.state_dir, calibration, config.camera, config.empty)
        source = write_frames(tmp_path / "items", list(frames))
        return Bin(config, factory, FolderCamera(source))

    return make


def test_an_empty_closing_moves_nothing_and_runs_no_inference(scene_bin):
    rng = np.random.default_rng(10)
    with scene_bin(camera_view(background(), rng), camera_view(with_item(background()), rng)) as b:
        chute = b.servo_pin("chute")
        chute.clear_states()
        invoked = []
        scores = b.daemon.classifier.scores
        b.daemon.classifier.scores = lambda rgb: invoked.append(rgb.shape) or scores(rgb)
        empty = b.item()
        assert len(chute.states) == 1  # not a single pulse
        assert invoked == []
        item = b.item()
        status = b.daemon.status()
    assert (empty.reason, empty.label, empty.compartment, empty.box, empty.scores) == (
        decision.EMPTY,
        None,
        None,
        None,
        {},
    )
    assert item.reason != decision.EMPTY and invoked and item.box is not None
    assert status["empty_reference"]["set"] is True and status["warnings"] == []


@pytest.mark.parametrize(("crop", "label"), [("item", "can"), ("off", None)])
def test_crop_shows_the_model_the_item(scene_bin, crop, label):
    rng = np.random.default_rng(11)
    with scene_bin(camera_view(with_item(background()), rng), classifier={"crop": crop}) as b:
        event = b.item()
    if label:
        assert (event.label, event.compartment, event.reason) == ("can", "can", decision.SORTED)
    else:  # the whole frame is mostly grey floor: the colour model is unsure, or wrong
        assert event.label != "can" or event.reason == decision.LOW_CONFIDENCE
    assert event.box is not None


def test_the_box_is_recorded_in_the_event_log(scene_bin, tmp_path):
    rng = np.random.default_rng(12)
    with scene_bin(camera_view(with_item(background()), rng)) as b:
        event = b.item()
    row = sqlite3.connect(tmp_path / "state" / "events.db").execute("SELECT box FROM events").fetchone()
    assert json.loads(row[0]) == list(event.box)


def test_capture_faults_go_to_the_fallback(scene_bin):
    rng = np.random.default_rng(13)
    item = camera_view(with_item(background()), rng)
    frames = [item, item, np.full_like(item, 255), np.zeros_like(item)]
    with scene_bin(*frames) as b:
        events = [b.item() for _ in frames]
    assert events[0].label is not None  # classified
    assert [e.reason for e in events[1:]] == ["capture:frozen", "capture:blown", "capture:black"]
    assert all(e.compartment == "other" for e in events[1:])
    assert (
        "frozen camera" in events[1].error and "blown-out" in events[2].error and "black" in events[3].error
    )


def test_without_a_reference_the_bin_sorts_as_before(scene_bin):
    rng = np.random.default_rng(14)
    item = camera_view(with_item(background()), rng)
    with scene_bin(item, item, np.zeros_like(item), reference=False, classifier={"crop": "item"}) as b:
        events = [b.item() for _ in range(3)]
        status = b.daemon.status()
    assert [e.reason for e in events[:2]] == [events[0].reason] * 2  # no frozen camera, no crop
    assert events[2].reason != "capture:black" and all(e.box is None for e in events)
    assert status["empty_reference"] == {
        "set": False,
        "path": str(b.config.paths.state_dir / "empty-reference.json"),
        "taken": None,
        "refreshed": 0,
        "not_empty_at_idle": 0,
        "problem": None,
    }


def test_a_reference_of_another_size_is_dropped_with_a_warning(scene_bin):
    rng = np.random.default_rng(15)
    small = cv2.resize(camera_view(with_item(background()), rng), (160, 120))
    with scene_bin(small, small) as b:
        first, second = b.item(), b.item()
        warnings = b.daemon.warnings()
    assert first.reason == second.reason == decision.LOW_CONFIDENCE or first.label == second.label
    assert first.box is None
    assert any("320x240 but the camera gives 160x120" in w for w in warnings)


def test_the_light_is_on_for_the_capture_only(scene_bin, factory):
    rng = np.random.default_rng(16)
    with scene_bin(camera_view(background(), rng), light={"pin": 22}) as b:
        seen = []
        capture = b.daemon.camera.capture
        b.daemon.camera.capture = lambda: seen.append(bool(factory.pin(22).state)) or capture()
        b.item()
        after = bool(factory.pin(22).state)
    assert seen == [True] and after is False


class SceneCamera(Camera):
    """A live camera looking at ``scene`` (which a test may change), with fresh sensor noise per frame."""

    name = "scene"

    def __init__(self, scene: np.ndarray) -> None:
        self.scene = scene
        self.rng = np.random.default_rng(17)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def capture(self) -> np.ndarray:
        return camera_view(self.scene, self.rng)


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_idle_frames_follow_drift_but_an_item_never_enters_the_reference(factory, tmp_path):
    config = fast_config(tmp_path, classifier={"frames": 1}, empty={"refresh_s": 0.02})
    rng = np.random.default_rng(18)
    save_reference(
        config.paths.state_dir,
        [camera_view(background(), rng) for _ in range(5)],
        config.camera,
        config.empty,
    )
    camera = SceneCamera(background())
    with Bin(config, factory, camera) as b:
        chamber = b.daemon.chamber
        start = chamber.reference.image().astype(float).mean()
        assert chamber.refreshed == 0  # lid open: no idle frames
        b.lid_pin.drive_low()  # the lid closes on an empty chamber and stays closed
        assert b.events.get(timeout=10).reason == decision.EMPTY
        camera.scene = np.clip(background().astype(int) + 12, 0, 255).astype(np.uint8)  # the light drifts
        assert wait_until(lambda: chamber.refreshed >= 10)
        assert chamber.reference.image().astype(float).mean() > start + 6
        camera.scene = with_item(camera.scene)  # an item (or a hand) in the closed chamber at idle
        assert wait_until(lambda: chamber.not_empty_at_idle >= 3)
        refreshed, reference = chamber.refreshed, chamber.reference.image()
        assert wait_until(lambda: chamber.not_empty_at_idle >= 6)
        assert any("did not look empty" in w for w in b.daemon.warnings())
    assert chamber.refreshed == refreshed
    assert np.array_equal(chamber.reference.image(), reference)


def test_the_folder_camera_is_never_asked_for_idle_frames(scene_bin):
    rng = np.random.default_rng(19)
    with scene_bin(camera_view(background(), rng), empty={"refresh_s": 0.01}) as b:
        b.lid_pin.drive_low()
        b.events.get(timeout=10)
        captures = b.daemon.camera.captures
        threading.Event().wait(0.1)  # refresh due ten times over: none may take a photo
        assert b.daemon.camera.captures == captures and b.daemon.chamber.refreshed == 0


# --- the event log's new column ----------------------------------------------------------------


def test_an_older_event_log_gets_the_box_column(tmp_path):
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, label TEXT,"
        " confidence REAL, scores TEXT NOT NULL, compartment TEXT, reason TEXT NOT NULL, model_version TEXT,"
        " frames INTEGER NOT NULL, capture_ms REAL, inference_ms REAL, latency_ms REAL, cycle_ms REAL,"
        " image_path TEXT, source TEXT, error TEXT)"
    )
    db.execute("INSERT INTO events (ts, scores, reason, frames) VALUES ('t0', '{}', 'sorted', 1)")
    db.commit()
    db.close()
    log = EventLog(path)
    event = ItemEvent("t1", "can", 0.9, {}, "can", "sorted", "m", 1, 1.0, 1.0, 1.0, box=(1, 2, 3, 4))
    log.record(event)
    log.close()
    rows = sqlite3.connect(path).execute("SELECT ts, box FROM events ORDER BY id").fetchall()
    assert rows == [("t0", None), ("t1", "[1, 2, 3, 4]")]


def test_the_light_pin_is_refused_when_taken():
    from smartbin.device.errors import ConfigError

    with pytest.raises(ConfigError, match=r"light\.pin: GPIO 12 is already used by servos\.chute\.pin"):
        parse_config({"light": {"pin": 12}})
    assert ("light.pin", 5) in parse_config({"light": {"pin": 5}}).pins()
    assert MODELS.is_dir()
