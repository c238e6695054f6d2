"""Feedback at the lid: the colours at the mock PWM pins of a gpiozero RGBLED, and the buzzer."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from smartbin.device.config import parse_config
from smartbin.device.home.feedback import Feedback
from smartbin.device.records.events import ItemEvent

from ..conftest import MODELS, fast_config

LED = {"red": 5, "green": 6, "blue": 26}
READY = {"fill": {"can": {"percent": 10.0, "full": False, "distance_cm": 55.0, "error": None}}}
FULL = {"fill": {"can": {"percent": 95.0, "full": True, "distance_cm": 12.5, "error": None}}}


def event(reason: str, compartment: str | None = None, error: str | None = None) -> ItemEvent:
    return ItemEvent(
        "2026-11-22T10:00:00.000+00:00",
        "can",
        0.9,
        {},
        compartment,
        reason,
        "m",
        1,
        1.0,
        1.0,
        1.0,
        error=error,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """For what gpiozero's background threads do (a blink's end, a beep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def make_feedback(factory):
    made: list[Feedback] = []

    def make(**keys) -> Feedback:
        feedback = Feedback(parse_config({"feedback": keys}).feedback, pin_factory=factory)
        made.append(feedback)
        return feedback

    yield make
    for feedback in made:
        feedback.close()


def rgb(factory, pins=LED) -> tuple[float, float, float]:
    return tuple(float(factory.pin(pins[c]).state) for c in ("red", "green", "blue"))


@pytest.mark.parametrize(
    ("hook", "expected", "shown"),
    [
        (lambda f: f.started(READY), (0.0, 0.2, 0.0), "ready"),
        (lambda f: f.started(FULL), (1.0, 0.0, 0.0), "full"),  # idle while a compartment is full
        (lambda f: f.item_started(), (0.0, 0.0, 1.0), "busy"),
        (lambda f: f.item(event("sorted", "can"), READY), (0.75, 0.75, 0.75), "sorted:can"),
        (lambda f: f.item(event("sorted", "glass"), READY), (0.0, 1.0, 0.0), "sorted:glass"),
        (lambda f: f.item(event("low_confidence", "other"), READY), (1.0, 0.5, 0.0), "unsure"),
        (lambda f: f.item(event("unknown_label", "other"), READY), (1.0, 0.5, 0.0), "unsure"),
        (lambda f: f.item(event("unmapped"), READY), (0.2, 0.2, 0.2), "empty"),
        (lambda f: f.item(event("full:can", "other"), FULL), (1.0, 0.0, 0.0), "full"),
        (lambda f: f.item(event("held:can"), FULL), (1.0, 0.0, 0.0), "full"),
        (
            lambda f: f.item(event("no_frame", "other", error="camera: 0 of 1 frames"), READY),
            (0.6, 0.0, 1.0),
            "fault",
        ),
        (lambda f: f.item(event("sorted", "can", error="servo: stalled"), READY), (0.6, 0.0, 1.0), "fault"),
    ],
)
def test_each_state_has_its_colour_at_the_pins(make_feedback, factory, hook, expected, shown):
    feedback = make_feedback(**LED, empty=[0.2, 0.2, 0.2], compartments={"can": "#bfbfbf"}, show_s=30)
    hook(feedback)
    assert rgb(factory) == pytest.approx(expected, abs=0.002)
    assert feedback.shown == shown


def test_the_outcome_shows_for_show_s_then_the_idle_colour(make_feedback, factory):
    feedback = make_feedback(**LED, show_s=0.05)
    feedback.started(READY)
    feedback.item(event("sorted", "can"), FULL)  # the item filled its compartment
    assert rgb(factory) == (0.0, 1.0, 0.0)
    assert wait_until(lambda: rgb(factory) == (1.0, 0.0, 0.0))  # then "full", not "ready"
    assert feedback.shown == "full"


def test_a_level_read_while_the_outcome_shows_changes_the_colour_after_it(make_feedback, factory):
    feedback = make_feedback(**LED, show_s=0.2)
    feedback.started(READY)
    feedback.item(event("sorted", "can"), READY)
    feedback.status_changed(FULL)  # the reading after the item: full
    assert rgb(factory) == (0.0, 1.0, 0.0)  # the outcome still shows
    assert wait_until(lambda: rgb(factory) == (1.0, 0.0, 0.0))
    feedback.status_changed(READY)  # emptied
    assert rgb(factory) == pytest.approx((0.0, 0.2, 0.0))


def test_common_anode_and_three_plain_leds(make_feedback, factory):
    make_feedback(**LED, active_high=False).started(READY)
    assert rgb(factory) == pytest.approx((1.0, 0.8, 1.0))  # low lights a common-anode channel
    plain = {"red": 7, "green": 8, "blue": 9}
    leds = make_feedback(**plain, pwm=False)
    leds.item(event("low_confidence", "other"), READY)  # amber (1, 0.5, 0): red and green on
    assert rgb(factory, plain) == (1.0, 1.0, 0.0)
    leds.started(READY)  # dim green (0, 0.2, 0): all off
    assert rgb(factory, plain) == (0.0, 0.0, 0.0)


def test_the_buzzer_beeps_once_for_unsure_and_full_only(make_feedback, factory):
    feedback = make_feedback(buzzer=16, beep_s=0.01)
    buzzer = factory.pin(16)

    def beeps() -> int:
        return sum(1 for s in buzzer.states if s.state)

    for reason, compartment in [("sorted", "can"), ("unmapped", None), ("low_confidence", "other")]:
        feedback.item(event(reason, compartment), READY)
    assert wait_until(lambda: beeps() == 1 and not buzzer.state)
    feedback.item(event("held:can"), FULL)
    assert wait_until(lambda: beeps() == 2 and not buzzer.state)
    feedback.item(event("sorted", "glass"), FULL)
    time.sleep(0.05)  # time enough for a beep that should not come
    assert beeps() == 2


def test_the_daemon_drives_the_led_through_an_item(make_bin, factory, tmp_path):
    config = fast_config(
        tmp_path,
        classifier={"model": str(MODELS / "colour4-int8")},
        feedback={**LED, "show_s": 30},
    )
    with make_bin("red", "grey", "black", config=config) as b:
        assert rgb(factory) == pytest.approx((0.0, 0.2, 0.0))  # ready
        seen = []
        for _ in range(3):
            b.item()
            seen.append((b.daemon.feedback.shown, rgb(factory)))
        status = b.daemon.status()
    assert seen == [
        ("sorted:can", (0.0, 1.0, 0.0)),
        ("unsure", pytest.approx((1.0, 0.5, 0.0))),
        ("empty", pytest.approx((0.3, 0.3, 0.3))),
    ]
    assert status["observers"]["feedback"] == {"shown": "empty"}
    assert rgb(factory) == (0.0, 0.0, 0.0)  # off once the daemon stopped
