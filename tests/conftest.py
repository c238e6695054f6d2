"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .device.home.mqtt_broker import Broker, need_mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker of the test's own on 127.0.0.1 (skipped without mosquitto)."""
    need_mosquitto()
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
