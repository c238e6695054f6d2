"""Observers hear the bin's life cycle in order, from the daemon's thread, and cannot stop it."""

from __future__ import annotations

import threading
from typing import Any

from smartbin.device.home.observers import Observer


class Recorder(Observer):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()

    def _note(self, hook: str, detail: Any = None) -> None:
        self.calls.append((hook, detail))
        self.threads.add(threading.current_thread().name)

    def started(self, status):
        self._note("started", status["model_version"])

    def item_started(self):
        self._note("item_started")

    def item(self, event, status):
        self._note("item", (event.label, event.compartment, status["items"]))

    def status_changed(self, status):
        self._note("status_changed", status["last_reload"]["ok"])

    def stopping(self):
        self._note("stopping")

    def status(self):
        return {"calls": len(self.calls)}


class Broken(Observer):
    name = "broken"

    def item(self, event, status):
        raise RuntimeError("the broker is on fire")

    def status(self):
        raise OSError("no status either")


def test_observers_hear_start_items_reload_and_stop_in_order(make_bin):
    recorder = Recorder()
    with make_bin("red", "blue", observers=[recorder]) as b:
        first, second = b.item(), b.item()
        b.daemon.request_reload()
        b.daemon.request_stop()
        b.thread.join(10)
    assert [hook for hook, _ in recorder.calls] == [
        "started",
        "item_started",
        "item",
        "item_started",
        "item",
        "status_changed",
        "stopping",
    ]
    assert recorder.calls[0][1] == b.daemon.model_version
    assert recorder.calls[2][1] == (first.label, first.compartment, 1)
    assert recorder.calls[4][1] == (second.label, second.compartment, 2)
    assert recorder.calls[5][1] is True
    # never from gpiozero's or the test's thread: only the thread running the daemon's loop (and start())
    assert recorder.threads <= {threading.main_thread().name, b.thread.name}


def test_a_failing_observer_is_counted_and_the_bin_keeps_sorting(make_bin):
    recorder = Recorder()
    with make_bin("red", "green", "blue", observers=[Broken(), recorder]) as b:
        events = [b.item() for _ in range(3)]
        status = b.daemon.status()
    assert [e.label for e in events] == ["can", "glass", "plastic"]
    assert all(e.compartment for e in events)
    assert [hook for hook, _ in recorder.calls].count("item") == 3  # the next observer still hears
    assert status["observers"]["failures"] == {"broken.item": 3}
    assert status["observers"]["broken"] == {"error": "no status either"}
    assert status["observers"]["recorder"]["calls"] >= 7
