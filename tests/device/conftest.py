"""Fixtures for the device tests: real TFLite colour models, mock pins, solid-colour photos.

A red frame is ``can``, green ``glass``, blue ``plastic``, grey is low confidence, and black is
``empty`` for the four-class model (see tests/fixtures/make_colour_models.py).
"""

from __future__ import annotations

import queue
import shutil
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from smartbin.device.config import Config, parse_config
from smartbin.device.daemon import Daemon
from smartbin.device.hardware.cameras import FolderCamera
from smartbin.device.home.notify import Notifier
from smartbin.device.records.events import ItemEvent

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 220, 30),
    "blue": (30, 30, 220),
    "grey": (128, 128, 128),
    "black": (0, 0, 0),
}


def duty(angle: float, min_pulse_ms: float = 0.5, max_pulse_ms: float = 2.5) -> float:
    """The mock PWM pin state (duty cycle at 50 Hz) of an AngularServo at ``angle`` on -90..90."""
    pulse = min_pulse_ms + (angle + 90) / 180 * (max_pulse_ms - min_pulse_ms)
    return pulse / 20.0


def write_image(path: Path, colour: str, size: tuple[int, int] = (48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((*size, 3), COLOURS[colour], np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def fast_config(tmp_path: Path, **sections: Mapping[str, Any]) -> Config:
    """Default config with no physical waits and all state under ``tmp_path``; ``sections`` override."""
    data: dict[str, Any] = {
        "lid": {"settle_s": 0.0},
        "sorting": {"travel_s": 0.0, "hold_s": 0.0},
        "classifier": {"model": str(MODELS / "colour3-int8"), "threads": 1, "frames": 3},
        "paths": {"state_dir": str(tmp_path / "state")},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, where="test", base=tmp_path)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.close()


@pytest.fixture
def models() -> Path:
    return MODELS


@pytest.fixture
def copy_model(tmp_path: Path):
    def copy(name: str, dest: str | None = None) -> Path:
        target = tmp_path / "bundles" / (dest or name)
        shutil.copytree(MODELS / name, target)
        return target

    return copy


class Bin:
    """A daemon serving on a background thread, with its lid on a mock pin and a queue of its events."""

    def __init__(
        self,
        config: Config,
        factory: MockFactory,
        camera: Any,
        notifier: Notifier | None = None,
        observers: Sequence[Any] = (),
        update_source: Any = None,
    ) -> None:
        self.config = config
        self.factory = factory
        self.events: queue.Queue[ItemEvent] = queue.Queue()
        self.daemon = Daemon(
            config,
            pin_factory=factory,
            camera=camera,
            notifier=notifier or Notifier({}),
            observers=observers,
            on_item=self.events.put,
            update_source=update_source,
        )
        self.lid_pin = factory.pin(config.lid.pin)
        self.thread = threading.Thread(target=self.daemon.serve, daemon=True)

    def __enter__(self) -> Bin:
        if self.daemon.state == "starting":
            self.daemon.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def servo_pin(self, name: str) -> MockPWMPin:
        return self.factory.pin(self.config.servo(name).pin)

    def item(self, timeout: float = 10) -> ItemEvent:
        """Close the lid (pull-up: drive low), wait for the item's event, open the lid."""
        self.lid_pin.drive_low()
        event = self.events.get(timeout=timeout)
        self.lid_pin.drive_high()
        return event


@pytest.fixture
def photos(tmp_path: Path):
    """photos(*colours) -> a folder with one solid-colour image per colour, in that order."""

    def make(*colours: str, folder: str = "photos") -> Path:
        root = tmp_path / folder
        for i, colour in enumerate(colours):
            write_image(root / f"{i:03d}-{colour}.png", colour)
        return root

    return make


@pytest.fixture
def make_bin(factory: MockFactory, tmp_path: Path):
    """make_bin(*colours, faults=..., config=...) -> a Bin to use as a context manager."""

    def make(
        *colours: str, faults: Mapping[int, str] | None = None, config: Config | None = None, **kw: Any
    ) -> Bin:
        config = config or fast_config(tmp_path)
        root = tmp_path / "photos"
        for i, colour in enumerate(colours):
            write_image(root / f"{i:03d}-{colour}.png", colour)
        camera = FolderCamera(root, frames_per_image=config.classifier.frames, faults=faults)
        return Bin(config, factory, camera, **kw)

    return make


NOTIFY_TIMEOUT_S = 60


class NotifySocket:
    """The receiving end of $NOTIFY_SOCKET, as systemd holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(NOTIFY_TIMEOUT_S)
        self.seen: list[str] = []

    def wait_for(self, line: str) -> str:
        """The next message holding ``line`` (every message is kept in ``seen``)."""
        while True:
            message = self.sock.recv(4096).decode()
            self.seen.append(message)
            if line in message.splitlines():
                return message

    def close(self) -> None:
        self.sock.close()
