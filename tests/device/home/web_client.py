"""A daemon with its review page on a free port, a small HTTP client, and a live camera for the tests."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.config import Config
from smartbin.device.hardware.cameras import Camera
from smartbin.device.home.web.observer import WebObserver
from smartbin.device.home.web.token import create_token

from ..conftest import COLOURS, fast_config


def web_config(tmp_path: Path, **sections: Any) -> Config:
    """The tests' fast config with photos saved and the page on 127.0.0.1, any free port."""
    web = {"listen": "127.0.0.1:0", "token_file": str(tmp_path / "web-token"), **sections.pop("web", {})}
    return fast_config(tmp_path, web=web, images={"save": True}, **sections)


def new_token(config: Config) -> str:
    return create_token(config.web.token_file)


class Http:
    """Requests to one base URL; every answer as (status, headers, body bytes)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None and not request.has_header("Content-type"):
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, expect: int = 200) -> Any:
        status, _, body = self.request("GET", path)
        assert status == expect, (path, status, body)
        return json.loads(body)

    def label(self, event_id: int, label: Any, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        status, _, body = self.request("POST", f"/api/events/{event_id}/label", {"label": label}, headers)
        return status, json.loads(body)

    def undo(self, event_id: int, review: Any, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        status, _, body = self.request("POST", f"/api/events/{event_id}/undo", {"review": review}, headers)
        return status, json.loads(body)


def page_of(observer: WebObserver) -> Http:
    assert observer.url is not None, observer.error
    return Http(observer.url)


def wait_for_items(http: Http, items: int, timeout: float = 10) -> dict[str, Any]:
    """/api/status once it counts ``items`` (the page hears of items from its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        status = http.json("/api/status")
        # before the daemon's first status reaches the page it says only {"state": "starting"}
        if status.get("items") == items or time.monotonic() > deadline:
            assert status.get("items") == items, status
            return status
        time.sleep(0.01)


class StageCamera(Camera):
    """A live camera showing whatever solid colour the test puts in front of it (``scene``), with
    an ``item`` of another colour in the middle when one is set; it notes the thread of each
    capture and whether the chamber's light was on."""

    name = "stage"

    def __init__(self, scene: str, light_pin: Any) -> None:
        self.scene = scene
        self.item: str | None = None
        self.light_pin = light_pin
        self.captures: list[tuple[str, bool]] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def capture(self) -> np.ndarray:
        self.captures.append((threading.current_thread().name, bool(self.light_pin.state)))
        frame = np.full((48, 64, 3), COLOURS[self.scene], np.uint8)
        if self.item is not None:
            frame[12:36, 20:44] = COLOURS[self.item]
        return frame
