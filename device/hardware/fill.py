"""Fill levels: an HC-SR04 ultrasonic sensor looking down into each compartment.

The daemon pings between items only, one ping per turn of its main loop, ``PING_GAP_S`` apart,
so a ping never overlaps a servo move and a lid closing waits for one ping at most (under
100 ms). gpiozero's :class:`~gpiozero.DistanceSensor` is used for the ping itself; its
background thread, which would ping at any time, is stopped. A reading is the median of
``samples`` pings (these sensors miss echoes and hear the walls); fewer than half of them
echoing is a fault: the level is unknown, shown in status, and the compartment is used as if
it were not full.

With gpiozero's mock pins, :func:`script_sensor` makes a sensor answer each ping with a
scripted distance (tests, ``smartbin simulate``).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import DistanceSensor
from gpiozero.exc import DistanceSensorNoEcho, PWMSoftwareFallback
from gpiozero.pins.pi import PiPin

from .pins import BoundedMockPWMPin
from .settings import FillConfig

SPEED_OF_SOUND = 343.26  # m/s, gpiozero's figure
RANGE_M = 4.0  # the HC-SR04's range; a farther echo reads as this
PING_GAP_S = 0.06  # the HC-SR04's measurement cycle: the last ping's echoes have died away
INTERVAL_S = 30.0  # between readings while no item comes (someone may empty a compartment)


class FillSensor:
    """One HC-SR04, pinged on demand."""

    def __init__(self, config: FillConfig, *, pin_factory: Any) -> None:
        self.config = config
        with warnings.catch_warnings():  # "use pigpio for accuracy": a median of pings is enough here
            warnings.simplefilter("ignore", PWMSoftwareFallback)
            self.device = DistanceSensor(
                echo=config.echo, trigger=config.trigger, max_distance=RANGE_M, pin_factory=pin_factory
            )
        self.device._queue.stop()  # the daemon pings when no servo moves, never this thread

    def ping(self) -> float | None:
        """The distance in cm, or None when no echo came back (up to 100 ms)."""
        with warnings.catch_warnings():  # a missed echo is counted, not printed
            warnings.simplefilter("ignore", DistanceSensorNoEcho)
            value = self.device._read()
        return None if value is None else value * RANGE_M * 100

    def close(self) -> None:
        self.device.close()


@dataclass(frozen=True)
class FillLevel:
    """One reading of a compartment; ``percent`` and ``distance_cm`` are None when it failed."""

    percent: float | None = None
    full: bool = False
    distance_cm: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "full": self.full,
            "distance_cm": self.distance_cm,
            "error": self.error,
        }


def fill_level(pings: list[float | None], config: FillConfig) -> FillLevel:
    """The median of the pings that echoed, as a percentage between empty_cm (0) and full_cm (100)."""
    echoes = [p for p in pings if p is not None]
    if 2 * len(echoes) < len(pings):
        heard = (
            f"only {len(echoes)} of {len(pings)} pings echoed"
            if echoes
            else f"no echo from {len(pings)} pings"
        )
        return FillLevel(error=heard)
    distance = statistics.median(echoes)
    percent = (config.empty_cm - distance) / (config.empty_cm - config.full_cm) * 100
    percent = round(min(100.0, max(0.0, percent)), 1)  # the level shown is the level compared
    return FillLevel(percent, percent >= config.full_percent, round(distance, 1))


class FillLevels:
    """The fill sensors of a bin, read one ping at a time when :attr:`due` (``time.monotonic()``)."""

    def __init__(self, configs: Mapping[str, FillConfig], *, pin_factory: Any, first_at: float) -> None:
        self.configs = dict(configs)
        self.sensors: dict[str, FillSensor] = {}
        try:
            for name, config in self.configs.items():
                self.sensors[name] = FillSensor(config, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self.levels = {name: FillLevel() for name in self.configs}
        self.ping_gap_s = PING_GAP_S
        self.interval_s = INTERVAL_S
        self.due = first_at
        self._queue: deque[str] = deque(self.configs)  # compartments left to read in this round
        self._pings: dict[str, list[float | None]] = {name: [] for name in self.configs}

    def ping(self) -> bool:
        """Ping the next sensor; True when that finished a round (every queued compartment read)."""
        if not self._queue:  # the periodic round: every compartment
            self._queue.extend(self.configs)
        name = self._queue[0]
        pings = self._pings[name]
        pings.append(self.sensors[name].ping())
        now = time.monotonic()
        if len(pings) < self.configs[name].samples:
            self.due = now + self.ping_gap_s
            return False
        self.levels[name] = fill_level(pings, self.configs[name])
        pings.clear()
        self._queue.popleft()
        if self._queue:
            self.due = now + self.ping_gap_s
            return False
        self.due = now + self.interval_s
        return True

    def item_added(self, compartment: str) -> None:
        """An item went into ``compartment``: read it again now (its pings so far are stale)."""
        if compartment not in self.configs:
            return
        self._pings[compartment].clear()
        if compartment in self._queue:
            self._queue.remove(compartment)
        self._queue.appendleft(compartment)
        self.due = time.monotonic()

    def full(self) -> dict[str, str]:
        """The full compartments and what each does with an item (``when_full``)."""
        return {name: self.configs[name].when_full for name, level in self.levels.items() if level.full}

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: level.to_dict() for name, level in self.levels.items()}

    def warnings(self) -> list[str]:
        return [
            f"fill sensor of compartment {name}: {level.error} (echo GPIO {self.configs[name].echo}, "
            f"trigger GPIO {self.configs[name].trigger}); its level is unknown and items still go there: "
            "check the wiring (docs/hardware.md)"
            for name, level in self.levels.items()
            if level.error
        ]

    def close(self) -> None:
        for sensor in self.sensors.values():
            sensor.close()
        self.sensors.clear()


# --- mock pins that answer pings -----------------------------------------------------------


class EchoPin(BoundedMockPWMPin):
    """A mock echo pin whose pulse lasts exactly as long as sound takes to go and come back.

    gpiozero's MockTriggerPin sleeps for the echo, and a scheduler delay of 1 ms is 17 cm; this
    pin stamps the falling edge ``seconds`` after the rising one without waiting.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self._stamp: float | None = None

    def pulse(self, seconds: float) -> None:
        start = time.monotonic()
        self._stamp = start
        self.drive_high()
        self._stamp = start + seconds
        self.drive_low()
        self._stamp = None

    def _call_when_changed(self) -> None:
        PiPin._call_when_changed(self, self._last_change if self._stamp is None else self._stamp, self._state)


class SonarTriggerPin(BoundedMockPWMPin):
    """A mock trigger pin: each ping echoes on ``echo_pin`` from ``distance_cm()`` (None: no echo)."""

    def __init__(
        self, factory: Any, info: Any, echo_pin: EchoPin, distance_cm: Callable[[], float | None]
    ) -> None:
        super().__init__(factory, info)
        self.echo_pin = echo_pin
        self.distance_cm = distance_cm

    def _set_state(self, value: float) -> None:
        super()._set_state(value)
        if value:
            distance = self.distance_cm()
            if distance is not None:
                self.echo_pin.pulse(2 * distance / 100 / SPEED_OF_SOUND)


def script_sensor(factory: Any, config: FillConfig, distance_cm: Callable[[], float | None]) -> None:
    """Make the mock pins of ``config`` answer every ping with ``distance_cm()``.

    Call it before the daemon starts, with a ``MockFactory(pin_class=MockPWMPin)``.
    """
    echo = factory.pin(config.echo, pin_class=EchoPin)
    factory.pin(config.trigger, pin_class=SonarTriggerPin, echo_pin=echo, distance_cm=distance_cm)
