"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .device.home.mqtt_broker import Broker, need_mosquitto
from .device.updates.nginx import Nginx, need_nginx


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker of the test's own on 127.0.0.1 (skipped without mosquitto)."""
    need_mosquitto()
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[object]:
    """``nginx_for(folder)``: a real nginx of the test's own serving ``folder`` on 127.0.0.1
    (skipped without nginx), or ``nginx_for(proxy_to=URL)`` one that is an HTTP proxy in front of
    URL; stopped at the end of the test."""
    need_nginx()
    started: list[Nginx] = []

    def start(root: Path | None = None, *, proxy_to: str | None = None) -> Nginx:
        folder = tmp_path / f"nginx{len(started)}"
        folder.mkdir()
        server = Nginx(folder, root or folder, proxy_to=proxy_to)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
