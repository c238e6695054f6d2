"""The servos that sort an item: move to a compartment, hold, go home, detach when idle.

One gpiozero AngularServo per configured servo. Servos move in the order they are configured
(e.g. the chute turns, then the flap drops the item), ``travel_s`` apart, and go home in the
reverse order. Detaching (no pulses) when idle stops the jitter of software PWM.
"""

from __future__ import annotations

import time
from typing import Any

from gpiozero import AngularServo

from ..config import Config


class Sorter:
    def __init__(self, config: Config, *, pin_factory: Any) -> None:
        self.config = config
        self.compartments = config.compartments
        self.servos: dict[str, AngularServo] = {}
        try:
            for s in config.servos:
                self.servos[s.name] = AngularServo(
                    s.pin,
                    initial_angle=None,
                    min_angle=s.min_angle,
                    max_angle=s.max_angle,
                    min_pulse_width=s.min_pulse_ms / 1000,
                    max_pulse_width=s.max_pulse_ms / 1000,
                    pin_factory=pin_factory,
                )
        except Exception:
            self.close()
            raise

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def move(self, compartment: str) -> None:
        """Turn each servo the compartment names to its angle, in configured order."""
        angles = self.compartments[compartment]
        for s in self.config.servos:
            if s.name in angles:
                self.servos[s.name].angle = angles[s.name]
                self._wait(self.config.sorting.travel_s)

    def hold(self) -> None:
        self._wait(self.config.sorting.hold_s)

    def home(self) -> None:
        """Every servo back to its home angle (reverse order), then detach if configured."""
        for s in reversed(self.config.servos):
            self.servos[s.name].angle = s.home
            self._wait(self.config.sorting.travel_s)
        if self.config.sorting.detach_when_idle:
            self.detach()

    def start_homing(self) -> float | None:
        """Command every servo home without waiting (start-up); return when to detach, or None.

        The caller detaches at the returned ``time.monotonic()`` value; with no travel time
        (or detaching off) there is nothing left to do.
        """
        for s in reversed(self.config.servos):
            self.servos[s.name].angle = s.home
        travel = self.config.sorting.travel_s * len(self.config.servos)
        if not self.config.sorting.detach_when_idle:
            return None
        if travel <= 0:
            self.detach()
            return None
        return time.monotonic() + travel

    def detach(self) -> None:
        for servo in self.servos.values():
            servo.detach()

    def angles(self) -> dict[str, float | None]:
        return {name: servo.angle for name, servo in self.servos.items()}

    def close(self) -> None:
        for servo in self.servos.values():
            servo.close()
        self.servos.clear()
