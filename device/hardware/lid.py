"""The lid sensor: a reed or micro switch read as a gpiozero Button.

The edge that means "lid closed" calls ``on_close``. Hardware bounce is filtered by gpiozero's
``bounce_time``; the daemon ignores closings that arrive while an item is being handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpiozero import Button

from .settings import LidConfig


class LidSensor:
    def __init__(self, config: LidConfig, *, pin_factory: Any, on_close: Callable[[], None]) -> None:
        self.config = config
        self.button = Button(
            config.pin,
            pull_up=config.pull_up,
            bounce_time=config.bounce_ms / 1000 or None,
            pin_factory=pin_factory,
        )
        if config.closed_when == "pressed":
            self.button.when_pressed = on_close
        else:
            self.button.when_released = on_close

    @property
    def closed(self) -> bool:
        return self.button.is_pressed == (self.config.closed_when == "pressed")

    def close(self) -> None:
        self.button.close()


def closed_level(config: LidConfig) -> bool:
    """The logic level the lid pin reads when the lid is closed (for driving a mock pin)."""
    pressed_level = not config.pull_up  # with a pull-up the switch pulls the pin low
    return pressed_level if config.closed_when == "pressed" else not pressed_level
