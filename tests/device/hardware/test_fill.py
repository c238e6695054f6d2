"""Fill levels: HC-SR04 sensors on gpiozero mock pins, read by the real DistanceSensor between items.

Each sensor's mock trigger pin answers a ping with a scripted distance (``script_sensor``): the
echo pulse lasts exactly as long as sound needs, so distances are exact and no test sleeps.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator

import pytest

from smartbin.device.cli import main
from smartbin.device.commands.simulate import simulate
from smartbin.device.config import parse_config
from smartbin.device.hardware.fill import FillLevels, script_sensor
from smartbin.device.hardware.settings import FillConfig
from smartbin.device.home.observers import Observer

from ..conftest import MODELS, fast_config

CAN = {"echo": 24, "trigger": 23, "empty_cm": 60, "full_cm": 10}  # 5 cm is 10%
OTHER = {"echo": 21, "trigger": 20, "empty_cm": 60, "full_cm": 10}


def script(factory, config: FillConfig, *distances: float | None) -> list[float | None]:
    """Answer the pings with ``distances`` in turn, the last one for ever; returns the list, which
    a test may change (its last item is the distance from then on)."""
    answers = list(distances)
    seen = [0]

    def answer() -> float | None:
        seen[0] += 1
        return answers[min(seen[0], len(answers)) - 1]

    script_sensor(factory, config, answer)
    return answers


def read_once(levels: FillLevels) -> None:
    """Ping until a reading round is over (as the daemon's timers would, without waiting)."""
    while not levels.ping():
        pass


@pytest.fixture
def sensor_levels(factory) -> Iterator[Callable[..., FillLevels]]:
    made: list[FillLevels] = []

    def make(*distances: float | None, **keys) -> FillLevels:
        config = parse_config({"fill": {"can": {**CAN, **keys}}}).fill
        script(factory, config["can"], *distances)
        levels = FillLevels(config, pin_factory=factory, first_at=0.0)
        made.append(levels)
        return levels

    yield make
    for levels in made:
        levels.close()


@pytest.mark.parametrize(
    ("distance", "percent", "full"),
    [
        (60.0, 0.0, False),  # empty
        (70.0, 0.0, False),  # deeper than empty_cm (the floor is uneven): still 0
        (35.0, 50.0, False),
        (16.0, 88.0, False),
        (15.0, 90.0, True),  # full_percent (90) is full
        (4.0, 100.0, True),  # above the brim
    ],
)
def test_the_level_between_empty_and_full_and_the_full_threshold(sensor_levels, distance, percent, full):
    levels = sensor_levels(distance)
    read_once(levels)
    assert levels.status()["can"] == {
        "percent": percent,
        "full": full,
        "distance_cm": distance,
        "error": None,
    }
    assert levels.full() == ({"can": "fallback"} if full else {})


def test_full_percent_is_configurable(sensor_levels):
    levels = sensor_levels(35.0, full_percent=50)
    read_once(levels)
    assert levels.full() == {"can": "fallback"}


def test_the_median_throws_out_an_echo_off_the_wall_and_a_missed_one(sensor_levels):
    levels = sensor_levels(40.0, 8.0, None, 41.0, 39.0, 40.0, samples=6)  # 8 cm alone: 100% full
    read_once(levels)
    assert levels.status()["can"] == {"percent": 40.0, "full": False, "distance_cm": 40.0, "error": None}


def test_fewer_than_half_echoing_is_a_fault_not_a_level(sensor_levels):
    levels = sensor_levels(12.0, None, None, samples=3)
    read_once(levels)
    assert levels.status()["can"] == {
        "percent": None,
        "full": False,
        "distance_cm": None,
        "error": "only 1 of 3 pings echoed",
    }
    assert levels.full() == {}  # an unknown level never stops the sorting
    assert levels.warnings() == [
        "fill sensor of compartment can: only 1 of 3 pings echoed (echo GPIO 24, trigger GPIO 23); "
        "its level is unknown and items still go there: check the wiring (docs/hardware.md)"
    ]


def test_the_sensor_pings_only_when_asked(sensor_levels, factory):
    """gpiozero's DistanceSensor pings every 60 ms from a thread of its own; that thread is stopped."""
    levels = sensor_levels(30.0)
    trigger = factory.pin(CAN["trigger"])
    assert not levels.sensors["can"].device._queue.is_alive()
    assert [s.state for s in trigger.states] == [False]  # no ping yet
    levels.ping()
    assert [bool(s.state) for s in trigger.states] == [False, True, False]  # one trigger pulse


# --- in the daemon ----------------------------------------------------------------------------


class Readings(Observer):
    """Hands each status the daemon reports outside an item (a fill reading) to the test."""

    name = "readings"

    def __init__(self) -> None:
        self.statuses: queue.Queue[dict] = queue.Queue()

    def status_changed(self, status):
        self.statuses.put(status)

    def next(self) -> dict:
        return self.statuses.get(timeout=10)

    def until(self, compartment: str, **level) -> dict:
        """The next status whose fill level of ``compartment`` has these values."""
        while True:
            status = self.next()
            if level.items() <= status["fill"][compartment].items():
                return status


def fill_bin(make_bin, factory, tmp_path, colours, *, can=(), other=(), **sections):
    """A bin with fill sensors in ``can`` (and ``other``, if given distances) and its Readings."""
    fill = {"can": {**CAN, **sections.pop("can_keys", {})}}
    if other:
        fill["other"] = {**OTHER, **sections.pop("other_keys", {})}
    config = fast_config(tmp_path, fill=fill, **sections)
    answers = {"can": script(factory, config.fill["can"], *can)}
    if other:
        answers["other"] = script(factory, config.fill["other"], *other)
    readings = Readings()
    return make_bin(*colours, config=config, observers=[readings]), readings, answers


def test_a_full_compartment_sends_its_items_to_the_fallback(make_bin, factory, tmp_path):
    b, readings, answers = fill_bin(make_bin, factory, tmp_path, ["red", "red"], can=[50.0])
    with b:
        assert readings.next()["fill"]["can"]["percent"] == 20.0  # read once the servos are home
        first = b.item()
        answers["can"].append(12.0)  # the item filled it up
        after = readings.next()  # the daemon reads it again at once (the idle reading is 30 s away)
        second = b.item()
    assert (first.compartment, first.reason) == ("can", "sorted")
    assert after["fill"]["can"] == {"percent": 96.0, "full": True, "distance_cm": 12.0, "error": None}
    assert (second.label, second.compartment, second.reason) == ("can", "other", "full:can")


def test_an_emptied_compartment_takes_items_again_after_an_idle_reading(make_bin, factory, tmp_path):
    b, readings, answers = fill_bin(make_bin, factory, tmp_path, ["red", "red"], can=[12.0])
    b.daemon.start()
    b.daemon.fill.interval_s = 0.02  # read while idle every 20 ms (30 s on a bin)
    with b:
        readings.until("can", full=True)
        full = b.item()
        answers["can"].append(60.0)  # someone emptied it; no item went in
        readings.until("can", percent=0.0)
        emptied = b.item()
    assert (full.compartment, full.reason) == ("other", "full:can")
    assert (emptied.compartment, emptied.reason) == ("can", "sorted")


def test_hold_keeps_the_item_on_the_lid(make_bin, factory, tmp_path):
    b, readings, _ = fill_bin(
        make_bin, factory, tmp_path, ["red", "blue"], can=[10.0], can_keys={"when_full": "hold"}
    )
    with b:
        readings.next()
        chute = b.servo_pin("chute")
        before = len(chute.states)
        held = b.item()
        assert len(chute.states) == before  # not a pulse: the servos did not move
        other = b.item()
        status = b.daemon.status()
    assert (held.label, held.compartment, held.reason) == ("can", None, "held:can")
    assert (other.compartment, other.reason) == ("plastic", "sorted")
    assert status["fill"]["can"]["full"] is True


def test_with_the_fallback_full_too_items_are_held(make_bin, factory, tmp_path):
    b, readings, _ = fill_bin(make_bin, factory, tmp_path, ["red", "grey"], can=[10.0], other=[10.0])
    with b:
        readings.next()
        for_can, unsure = b.item(), b.item()
    assert (for_can.compartment, for_can.reason) == (None, "held:can")
    assert (unsure.compartment, unsure.reason) == (None, "held:other")


def test_a_sensor_without_echo_is_a_fault_in_status_and_the_bin_sorts_on(make_bin, factory, tmp_path):
    b, readings, _ = fill_bin(make_bin, factory, tmp_path, ["red"], can=[None], can_keys={"samples": 2})
    with b:
        status = readings.next()
        event = b.item()
    assert status["fill"]["can"] == {
        "percent": None,
        "full": False,
        "distance_cm": None,
        "error": "no echo from 2 pings",
    }
    assert any(
        w.startswith("fill sensor of compartment can: no echo from 2 pings") for w in status["warnings"]
    )
    assert (event.compartment, event.reason) == ("can", "sorted")


def test_no_ping_while_a_servo_moves(make_bin, factory, tmp_path):
    """Pings (the sensor's trigger) and servo moves never overlap, and pings come from the daemon's
    thread only, with items arriving while readings are due."""
    sections = {"sorting": {"travel_s": 0.03, "hold_s": 0.03}}
    b, readings, _ = fill_bin(make_bin, factory, tmp_path, ["red", "green"] * 3, can=[30.0], **sections)
    moving = threading.Event()
    overlaps: list[str] = []
    threads: set[str] = set()
    pings = [0]

    def answer() -> float:
        pings[0] += 1
        threads.add(threading.current_thread().name)
        if moving.is_set():
            overlaps.append(f"ping {pings[0]} during a move")
        return 30.0

    factory.pin(CAN["trigger"]).distance_cm = answer
    with b:
        sorter = b.daemon.sorter
        for step in ("move", "hold", "home"):
            real = getattr(sorter, step)

            def watched(*args, real=real):
                moving.set()
                try:
                    return real(*args)
                finally:
                    moving.clear()

            setattr(sorter, step, watched)
        b.daemon.fill.ping_gap_s = 0.005  # many pings, so that a ping during a move would show
        readings.next()
        for _ in range(6):
            b.lid_pin.drive_low()
            b.events.get(timeout=10)
            b.lid_pin.drive_high()
        readings.next()
    assert overlaps == []
    assert pings[0] >= 10
    assert threads == {b.thread.name}


def test_status_shows_the_fill_levels(make_bin, factory, tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        "[fill.can]\necho = 24\ntrigger = 23\nempty_cm = 60\nfull_cm = 10\n"
        "[fill.other]\necho = 21\ntrigger = 20\nempty_cm = 60\nfull_cm = 10\nsamples = 1\n"
    )
    b, readings, _ = fill_bin(
        make_bin, factory, tmp_path, ["blue"], can=[12.0], other=[None], other_keys={"samples": 1}
    )
    with b:
        b.daemon.status_interval_s = 0  # every item writes status.json at once
        readings.next()
        b.item()  # into plastic: no new reading, status.json written
        assert main(["status", "--config", str(path)]) == 0
        text = capsys.readouterr().out
        assert main(["status", "--config", str(path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
    assert "fill:     can FULL 96%, other ?" in text
    assert "warning:  fill sensor of compartment other: no echo from 1 pings" in text
    assert status["fill"]["can"]["full"] is True


# --- in the simulation ------------------------------------------------------------------------


def test_the_simulation_fills_compartments_and_shows_the_levels(photos):
    config = parse_config(
        {"fill": {"can": {**CAN, "full_percent": 30}}, "feedback": {"red": 5, "green": 6, "blue": 26}}
    )
    items = []
    simulate(
        config,
        images=photos("red", "red", "red", "red", "blue"),
        model=MODELS / "colour3-int8",
        fast=True,
        on_item=items.append,
    )
    assert [(i.event.compartment, i.event.reason) for i in items] == [
        ("can", "sorted"),
        ("can", "sorted"),
        ("can", "sorted"),  # 30% after it: full
        ("other", "full:can"),
        ("plastic", "sorted"),
    ]
    assert [i.fill["can"]["percent"] for i in items] == [10.0, 20.0, 30.0, 30.0, 30.0]
    assert [i.feedback for i in items] == ["sorted:can", "sorted:can", "sorted:can", "full", "sorted:plastic"]


def test_simulate_prints_the_led_and_the_levels(photos, tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(
        "[fill.can]\necho = 24\ntrigger = 23\nempty_cm = 60\nfull_cm = 10\nfull_percent = 15\n"
        "[feedback]\nred = 5\ngreen = 6\nblue = 26\n"
    )
    images = photos("red", "red", "red")
    argv = [
        "simulate",
        "--config",
        str(path),
        "--images",
        str(images),
        "--model",
        str(MODELS / "colour3-int8"),
    ]
    assert main([*argv, "--fast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("led sorted:can  fill can 10%")
    assert lines[1].endswith("led sorted:can  fill can FULL 20%")
    assert " -> other      full:can " in lines[2] and lines[2].endswith("led full  fill can FULL 20%")
    assert main([*argv, "--fast", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[2])
    assert (record["reason"], record["feedback"], record["fill"]["can"]["full"]) == ("full:can", "full", True)
