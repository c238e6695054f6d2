"""Observers: what listens to the bin without being part of the item cycle.

MQTT, the lid's LED and buzzer, the web page and metrics all hang off the daemon through this one
interface. The daemon tells them what happened, always from its own main thread, and never waits
for them:

- a hook must return at once; slow work (the network, a beep) goes to a thread of the observer's own;
- a hook never calls back into the daemon or moves hardware the cycle owns;
- a hook that raises is logged (once per hook and observer, then counted) and the bin keeps sorting.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..records.events import ItemEvent
from .camera_requests import CameraRequests

log = logging.getLogger(__name__)


class Observer:
    """Base class with do-nothing hooks; override the ones you need."""

    name = "observer"  # the key of :meth:`status` in status.json's ``observers``

    def attach(self, requests: CameraRequests) -> None:
        """Before :meth:`started`: where to ask the daemon for what only its thread may do (the camera)."""

    def attach_updates(self, check_now: Callable[[], None]) -> None:
        """Before :meth:`started`, on a bin that checks for updates ([updates] url): ``check_now()``
        asks for a check at once (MQTT's ``cmd/update``); it returns at once, from any thread."""

    def started(self, status: Mapping[str, Any]) -> None:
        """The bin is ready to sort; ``status`` is the daemon's status (model version, counts...)."""

    def item_started(self) -> None:
        """The lid closed and an item is being handled (the bin is busy)."""

    def item(self, event: ItemEvent, status: Mapping[str, Any]) -> None:
        """An item was handled and recorded; ``status`` is the daemon's status after it."""

    def status_changed(self, status: Mapping[str, Any]) -> None:
        """Something other than an item changed the daemon's status (a reload, a fault, a fill level)."""

    def stopping(self) -> None:
        """The daemon stops: say goodbye (e.g. publish ``offline``) and end your threads."""

    def status(self) -> Mapping[str, Any] | None:
        """What this observer adds to status.json (e.g. connection state), or None."""
        return None


class QueuedObserver(Observer):
    """An observer whose hooks only put what happened into :attr:`inbox`, as tuples
    ``("status", status)``, ``("busy",)``, ``("item", event, status)``; a thread of its own takes them.

    ``started`` queues the first status; a subclass extends it to start its thread.
    """

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def started(self, status: Mapping[str, Any]) -> None:
        self.inbox.put(("status", status))

    def item_started(self) -> None:
        self.inbox.put(("busy",))

    def item(self, event: ItemEvent, status: Mapping[str, Any]) -> None:
        self.inbox.put(("item", event, status))

    def status_changed(self, status: Mapping[str, Any]) -> None:
        self.inbox.put(("status", status))


class Observers:
    """Calls a hook on every observer; an observer that fails never stops the others or the bin."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers = list(observers)
        self.failures: dict[str, int] = {}

    def __iter__(self):
        return iter(self._observers)

    def __len__(self) -> int:
        return len(self._observers)

    def add(self, observer: Observer) -> None:
        """One more observer (the daemon adds those it builds on its own pins, e.g. the lid's LED)."""
        self._observers.append(observer)

    def notify(self, hook: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, hook)(*args)
            except Exception as exc:  # an observer's fault is never the bin's
                key = f"{observer.name}.{hook}"
                self.failures[key] = self.failures.get(key, 0) + 1
                if self.failures[key] == 1:
                    log.exception(
                        "observer %s failed in %s (logged once, then counted): %s", *key.split("."), exc
                    )

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for observer in self._observers:
            try:
                section = observer.status()
            except Exception as exc:
                section = {"error": str(exc) or type(exc).__name__}
            if section is not None:
                out[observer.name] = dict(section)
        if self.failures:
            out["failures"] = dict(self.failures)
        return out
