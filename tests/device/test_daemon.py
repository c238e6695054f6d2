"""The item cycle on mock pins, the folder camera and real TFLite models."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from smartbin.device import decision
from smartbin.device.errors import CameraError
from smartbin.device.hardware.cameras import FolderCamera

from .conftest import MODELS, duty, fast_config, write_image

# compartment -> (chute angle, flap angle) in the default config
ANGLES = {"can": (-60, 60), "glass": (-20, 60), "plastic": (20, 60), "other": (60, 60)}


def states(pin) -> list[float]:
    return [s.state for s in pin.states]


@pytest.mark.parametrize(("colour", "label"), [("red", "can"), ("green", "glass"), ("blue", "plastic")])
def test_item_goes_to_its_compartment_and_servos_return_home(make_bin, colour, label):
    with make_bin(colour) as b:
        chute, flap = b.servo_pin("chute"), b.servo_pin("flap")
        # started: homed, then detached (no pulses)
        assert chute.frequency is None and flap.frequency is None
        chute.clear_states()
        flap.clear_states()

        event = b.item()
        chute_states, flap_states = states(chute), states(flap)

    assert (event.label, event.compartment, event.reason) == (label, label, decision.SORTED)
    assert event.confidence > 0.9
    assert event.frames == 3 and event.error is None
    assert event.model_version == "colour3-int8-1"
    want_chute, want_flap = ANGLES[label]
    # moved to the compartment, back home (0 degrees), then detached (0.0: no pulses)
    assert chute_states == pytest.approx([0.0, duty(want_chute), duty(0), 0.0])
    assert flap_states == pytest.approx([0.0, duty(want_flap), duty(0), 0.0])
    assert 0 < event.latency_ms <= event.cycle_ms
    assert event.capture_ms >= 0 and event.inference_ms > 0


def test_low_confidence_goes_to_the_fallback(make_bin):
    with make_bin("grey") as b:
        chute = b.servo_pin("chute")
        chute.clear_states()
        event = b.item()
        assert states(chute)[1] == pytest.approx(duty(ANGLES["other"][0]))
    assert event.reason == decision.LOW_CONFIDENCE
    assert event.compartment == "other"
    assert event.confidence < 0.6


def test_unmapped_label_does_not_move_the_servos(make_bin, tmp_path):
    config = fast_config(tmp_path, classifier={"model": str(MODELS / "colour4-int8")})
    with make_bin("black", "red", config=config) as b:
        chute, flap = b.servo_pin("chute"), b.servo_pin("flap")
        chute.clear_states()
        flap.clear_states()
        empty = b.item()
        assert len(chute.states) == 1 and len(flap.states) == 1  # not a single pulse
        can = b.item()
    assert (empty.label, empty.compartment, empty.reason) == ("empty", None, decision.UNMAPPED)
    assert (can.label, can.compartment) == ("can", "can")


def test_lid_bounce_starts_one_cycle(make_bin, tmp_path):
    # A settle delay keeps the first cycle busy while the lid bounces.
    config = fast_config(tmp_path, lid={"settle_s": 0.2})
    with make_bin("red", "blue", config=config) as b:
        pin = b.lid_pin
        pin.drive_low()
        for _ in range(3):  # bounces and re-closings during the item
            pin.drive_high()
            pin.drive_low()
        first = b.events.get(timeout=10)
        pin.drive_high()
        second = b.item()  # the next real closing is the next photo, not a bounce of the first
        assert b.daemon.items == 2
        assert b.daemon.ignored_closings == 3
    assert (first.label, second.label) == ("can", "plastic")
    assert b.events.empty()


def test_a_failed_capture_reopens_the_camera_and_recovers(make_bin):
    reopened = threading.Event()
    with make_bin("green", faults={1: "raise"}) as b:
        original = b.daemon.camera.reopen

        def reopen():
            reopened.set()
            original()

        b.daemon.camera.reopen = reopen
        event = b.item()
    assert reopened.is_set()
    assert event.label == "glass" and event.compartment == "glass" and event.frames == 3
    assert "recovered after 1 failed capture" in event.error


def test_a_dead_camera_sends_the_item_to_the_fallback_and_the_daemon_lives_on(make_bin):
    # retries = 2: captures 0, 1 and 2 fail, so the first item gets no frame at all
    with make_bin("red", "blue", faults={0: "raise", 1: "raise", 2: "raise"}) as b:
        lost = b.item()
        chute = b.servo_pin("chute")
        assert b.thread.is_alive()
        next_item = b.item()
    assert (lost.label, lost.compartment, lost.reason, lost.frames) == (None, "other", decision.NO_FRAME, 0)
    assert "camera: 0 of 3 frames" in lost.error and "simulated fault" in lost.error
    assert next_item.label == "can"  # the photo in front of the camera did not change
    assert chute.frequency is None  # homed and detached


def test_a_camera_out_of_photos_never_stops_the_daemon(make_bin):
    with make_bin("red") as b:
        b.item()
        empty = b.item()
        assert b.thread.is_alive()
    assert empty.reason == decision.NO_FRAME and "no more images" in empty.error


def test_every_item_is_recorded(make_bin, tmp_path):
    import sqlite3

    with make_bin("red", "grey", "blue") as b:
        ids = [b.item().id for _ in range(3)]
    rows = sqlite3.connect(tmp_path / "state" / "events.db").execute(
        "SELECT id, compartment, reason, model_version, frames, error FROM events ORDER BY id"
    )
    assert list(rows) == [
        (ids[0], "can", "sorted", "colour3-int8-1", 3, None),
        (ids[1], "other", "low_confidence", "colour3-int8-1", 3, None),
        (ids[2], "plastic", "sorted", "colour3-int8-1", 3, None),
    ]


def test_images_are_saved_and_bounded(make_bin, tmp_path):
    config = fast_config(tmp_path, images={"save": True, "max_count": 2})
    with make_bin("red", "green", "blue", config=config) as b:
        events = [b.item() for _ in range(3)]
    saved = sorted((tmp_path / "state" / "images").glob("*.jpg"))
    assert [p.name for p in saved] == sorted(os.path.basename(e.image_path) for e in events[1:])
    assert not os.path.exists(events[0].image_path)


def test_reload_switches_the_current_model_and_keeps_it_when_the_new_one_is_broken(
    factory, tmp_path, copy_model
):
    store = tmp_path / "models"
    store.mkdir()
    (store / "current").symlink_to(copy_model("colour3-int8"))
    config = fast_config(tmp_path, classifier={"model": ""}, paths={"models_dir": str(store)})
    write_image(tmp_path / "photos" / "a.png", "red")
    from .conftest import Bin

    b = Bin(config, factory, FolderCamera(tmp_path / "photos", frames_per_image=3, loop=True))
    with b:
        assert b.daemon.model_version == "colour3-int8-1"
        # a good new model: switch 'current' as deploy does (new link + rename)
        (store / "next").symlink_to(copy_model("colour3-float32"))
        os.replace(store / "next", store / "current")
        assert b.daemon.reload() is True
        assert b.daemon.model_version == "colour3-float32-1"
        assert b.item().model_version == "colour3-float32-1"

        # a broken one: the old model keeps running
        broken = copy_model("colour3-int8", "broken")
        (broken / "model.tflite").write_bytes(b"not a model")
        (store / "next").symlink_to(broken)
        os.replace(store / "next", store / "current")
        assert b.daemon.reload() is False
        assert b.daemon.model_version == "colour3-float32-1"
        assert b.item().label == "can"


def test_sigterm_finishes_the_item_homes_the_servos_and_stops(make_bin, tmp_path):
    """The real signal path, in this process: the handler sets a flag; serve() runs on the main thread."""
    config = fast_config(tmp_path, lid={"settle_s": 0.2})
    b = make_bin("blue", config=config)
    b.daemon.start()
    chute = b.servo_pin("chute")
    chute.clear_states()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    b.daemon.install_signal_handlers()

    def close_lid_then_terminate():
        b.lid_pin.drive_low()  # the item starts (and settles for 0.2 s) ...
        os.kill(os.getpid(), signal.SIGTERM)  # ... and the service is stopped meanwhile

    try:
        threading.Thread(target=close_lid_then_terminate).start()
        b.daemon.serve()  # returns once stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    event = b.events.get_nowait()
    assert event.compartment == "plastic"  # the item was finished, not dropped
    assert states(chute) == pytest.approx(
        [0.0, duty(20), duty(0), 0.0, duty(0), 0.0]
    )  # item, then home on stop
    assert b.daemon.state == "stopped"
    with pytest.raises(CameraError, match="not open"):
        b.daemon.camera.capture()


def test_status_after_a_burst_of_items_is_written_once_the_bin_is_idle(make_bin, tmp_path):
    import json

    with make_bin("red", "blue") as b:
        b.daemon.status_interval_s = 0.3
        written = threading.Event()
        write = b.daemon._write_status

        def write_and_tell():
            write()
            if b.daemon.items == 2:
                written.set()

        b.daemon._write_status = write_and_tell
        b.item()
        b.item()  # within 0.3 s of the first: deferred
        assert written.wait(5)
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert (status["state"], status["items"], status["last_item"]["compartment"]) == (
            "ready",
            2,
            "plastic",
        )


def test_servos_homed_at_start_are_detached_once_they_had_time_to_arrive(make_bin, tmp_path):
    config = fast_config(tmp_path, sorting={"travel_s": 0.05})
    b = make_bin("red", config=config)
    detached = threading.Event()
    b.daemon.start()
    chute = b.servo_pin("chute")
    assert chute.frequency == 50 and chute.state == pytest.approx(duty(0))  # READY while still homing
    detach = b.daemon.sorter.detach
    b.daemon.sorter.detach = lambda: (detach(), detached.set())
    with b:  # serves; start() was done above
        assert detached.wait(5)
        assert chute.frequency is None


def test_a_servo_fault_is_recorded_and_the_servos_go_home(make_bin, monkeypatch):
    with make_bin("red", "blue") as b:
        chute = b.servo_pin("chute")

        def jammed(compartment):
            b.daemon.sorter.servos["chute"].angle = -60
            raise RuntimeError("servo stalled")

        monkeypatch.setattr(b.daemon.sorter, "move", jammed)
        event = b.item()
        assert chute.frequency is None  # homed and detached after the fault
        assert chute.states[-2].state == pytest.approx(duty(0))
        monkeypatch.undo()
        assert b.item().compartment == "plastic"
    assert event.compartment == "can" and event.error == "servo: servo stalled"


def test_a_pin_already_in_use_is_one_clear_error(make_bin, factory):
    from gpiozero import Button

    from smartbin.device.errors import SmartbinError

    b = make_bin("red")
    squatter = Button(13, pin_factory=factory)  # the flap's pin
    with pytest.raises(SmartbinError) as err:
        b.daemon.run()
    squatter.close()
    message = str(err.value)
    assert "cannot set up the GPIO pins (lid 17, servos 12, 13)" in message and "GPIOPinInUse" in message
    assert "\n" not in message
    assert b.daemon.state == "stopped"


def test_reload_reads_the_config_again_applies_sorting_and_names_what_waits(factory, tmp_path):
    """SIGHUP once reloaded only the model: a new threshold was ignored while the log said 'reloaded',
    and a config made invalid was 'reloaded' too."""
    from smartbin.device.config import load_config

    from .conftest import MODELS, Bin

    file = tmp_path / "config.toml"
    base = (
        f"[classifier]\nmodel = '{MODELS / 'colour3-int8'}'\nthreads = 1\n"
        f"[paths]\nstate_dir = '{tmp_path / 'state'}'\n[lid]\nsettle_s = 0.0\n"
    )
    file.write_text(base + "[sorting]\ntravel_s = 0.0\nhold_s = 0.0\n")
    write_image(tmp_path / "photos" / "a.png", "red")
    b = Bin(load_config(file), factory, FolderCamera(tmp_path / "photos", frames_per_image=1, loop=True))
    with b:
        assert b.item().compartment == "can"
        file.write_text(base + "[sorting]\ntravel_s = 0.0\nhold_s = 0.0\nthreshold = 1.0\n")
        assert b.daemon.reload() is True
        assert b.daemon.thresholds()["can"].value == 1.0 and b.item().compartment == "other"

        file.write_text(base + "[sorting]\nthreshold = 2\n")  # invalid: nothing changes
        assert b.daemon.reload() is False
        assert "sorting.threshold: expected a confidence 0-1" in b.daemon.last_reload["error"]
        assert b.daemon.config.sorting.threshold == 1.0

        file.write_text(
            base.replace("settle_s = 0.0", "settle_s = 0.0\npin = 5")
            + "[sorting]\ntravel_s = 0.0\nhold_s = 0.0\n"
        )
        assert b.daemon.reload() is True
        assert b.daemon.last_reload["restart_needed"] == ["lid"] and b.daemon.config.lid.pin == 17
        assert b.daemon.config.sorting.threshold is None  # the sorting change applied all the same
        assert any("config changes to [lid] wait for a restart" in w for w in b.daemon.warnings())
