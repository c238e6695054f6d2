"""The gpiozero pin factory the config names, created explicitly and passed to every device."""

from __future__ import annotations

import importlib
from collections import deque
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from ..errors import ConfigError

# name -> (module, class); imported only when chosen, so a desktop needs none of the Pi libraries.
_FACTORIES = {
    "lgpio": (
        "gpiozero.pins.lgpio",
        "LGPIOFactory",
        "sudo apt install python3-lgpio; a venv needs --system-site-packages",
    ),
    "rpigpio": (
        "gpiozero.pins.rpigpio",
        "RPiGPIOFactory",
        "sudo apt install python3-rpi.gpio; a venv needs --system-site-packages",
    ),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory", "sudo apt install python3-pigpio pigpiod"),
    "native": ("gpiozero.pins.native", "NativeFactory", "it needs /dev/gpiomem"),
}


MOCK_PIN_HISTORY = 64  # state changes a mock pin remembers (gpiozero's own remembers every one)


class BoundedMockPWMPin(MockPWMPin):
    """gpiozero's PWM-capable mock pin, remembering only its last :data:`MOCK_PIN_HISTORY` changes.

    The stock pin appends every change to ``states``: about 1 KB per item as the servos move, so a
    long simulation (or a bin left on mock pins) grew without bound.
    """

    def clear_states(self) -> None:
        super().clear_states()
        self.states = deque(self.states, maxlen=MOCK_PIN_HISTORY)


def make_pin_factory(name: str) -> Any:
    """A new pin factory; ``mock`` gives gpiozero's MockFactory with PWM-capable mock pins."""
    if name == "mock":
        return MockFactory(pin_class=BoundedMockPWMPin)
    if name not in _FACTORIES:
        raise ConfigError(f"unknown pin factory {name!r}; use mock, {', '.join(_FACTORIES)}")
    module_name, class_name, hint = _FACTORIES[name]
    try:
        factory_class = getattr(importlib.import_module(module_name), class_name)
        return factory_class()
    except Exception as exc:  # each library fails its own way off a Pi (ImportError, OSError, ...)
        raise ConfigError(
            f"gpio.pin_factory = {name!r} cannot start ({type(exc).__name__}: {exc}); {hint}"
        ) from None
