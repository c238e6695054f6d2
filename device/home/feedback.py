"""Feedback at the lid: an RGB LED (or three LEDs) and a buzzer say what the bin decided.

An observer of the daemon: "busy" when the lid closes; after the item its outcome (sorted into
a compartment, unsure, empty, full, fault) for ``show_s``, then the idle colour: "full" while a
compartment is full, else "ready". Every hook returns at once: colours are set on the pins, and
the return to idle and the beep run on gpiozero's background blink threads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gpiozero import RGBLED, Buzzer

from ..decision import EMPTY, LOW_CONFIDENCE, UNKNOWN_LABEL, UNMAPPED, full_compartment
from ..records.events import ItemEvent
from .observers import Observer
from .settings import FeedbackConfig

Colour = tuple[float, float, float]


def outcome(event: ItemEvent) -> str:
    """What the person at the lid is shown for an item: ``sorted:<compartment>``, unsure, empty, full, fault."""
    if event.error:
        return "fault"
    if full_compartment(event.reason):
        return "full"
    if event.reason in (LOW_CONFIDENCE, UNKNOWN_LABEL):
        return "unsure"
    if event.reason in (UNMAPPED, EMPTY):
        return "empty"
    return f"sorted:{event.compartment}"


def idle_state(status: Mapping[str, Any]) -> str:
    """``full`` while a compartment is full (status' fill levels), else ``ready``."""
    fill = status.get("fill") or {}
    return "full" if any(level["full"] for level in fill.values()) else "ready"


class Feedback(Observer):
    name = "feedback"

    def __init__(self, config: FeedbackConfig, *, pin_factory: Any) -> None:
        self.config = config
        self.led: RGBLED | None = None
        self.buzzer: Buzzer | None = None
        try:
            if config.led is not None:
                self.led = RGBLED(
                    *config.led, active_high=config.active_high, pwm=config.pwm, pin_factory=pin_factory
                )
            if config.buzzer is not None:
                self.buzzer = Buzzer(config.buzzer, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self.idle = "off"
        self._busy = False
        self._outcome: str | None = None
        self._outcome_until = 0.0

    @property
    def shown(self) -> str:
        """The state the LED shows now: busy, an item's outcome for ``show_s``, or the idle state."""
        if self._busy:
            return "busy"
        if self._outcome is not None and time.monotonic() < self._outcome_until:
            return self._outcome
        return self.idle

    def colour(self, state: str) -> Colour:
        """The configured colour of a state (``sorted:<compartment>`` included), as the LED can show it."""
        kind, _, compartment = state.partition(":")
        if state == "off":
            rgb = (0.0, 0.0, 0.0)
        elif kind == "sorted":
            rgb = self.config.compartments.get(compartment, self.config.sorted)
        else:
            rgb = getattr(self.config, kind)
        return rgb if self.config.pwm else tuple(float(c >= 0.5) for c in rgb)

    # --- the daemon's hooks ------------------------------------------------------------------

    def started(self, status: Mapping[str, Any]) -> None:
        self.idle = idle_state(status)
        self._show(self.idle)

    def item_started(self) -> None:
        self._busy = True
        self._show("busy")

    def item(self, event: ItemEvent, status: Mapping[str, Any]) -> None:
        self._busy = False
        self.idle = idle_state(status)
        self._outcome = outcome(event)
        self._outcome_until = time.monotonic() + self.config.show_s
        self._show_outcome(self.config.show_s)
        if self.buzzer is not None and self._outcome.partition(":")[0] in self.config.beep:
            self.buzzer.beep(on_time=self.config.beep_s, off_time=0, n=1, background=True)

    def status_changed(self, status: Mapping[str, Any]) -> None:
        idle = idle_state(status)
        if idle == self.idle:
            return
        self.idle = idle
        left = self._outcome_until - time.monotonic()
        if self._busy:
            return  # the item's outcome comes next
        if self._outcome is not None and left > 0:
            self._show_outcome(left)  # the same outcome, then the new idle colour
        else:
            self._show(idle)

    def stopping(self) -> None:
        self.close()
        self.idle, self._busy, self._outcome = "off", False, None

    def status(self) -> Mapping[str, Any]:
        return {"shown": self.shown}

    # --- the pins ------------------------------------------------------------------------------

    def _show(self, state: str) -> None:
        if self.led is not None:
            self.led.value = self.colour(state)

    def _show_outcome(self, seconds: float) -> None:
        """The outcome's colour now, the idle colour after ``seconds`` (gpiozero's blink thread)."""
        if self.led is None:
            return
        if seconds <= 0:
            self._show(self.idle)
            return
        on = self.colour(self._outcome)
        self.led.value = on  # set here, so it shows when the hook returns
        self.led.blink(on_time=seconds, off_time=0, on_color=on, off_color=self.colour(self.idle), n=1)

    def close(self) -> None:
        for device in (self.led, self.buzzer):
            if device is not None:
                device.close()
        self.led = self.buzzer = None
