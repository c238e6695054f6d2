"""Asks from the page's threads for what only the daemon's thread may do: use the camera.

A page thread calls :meth:`CameraRequests.ask` (``snapshot``, ``calibrate``, ``test``); that
notes the ask and pokes the daemon's wake-up socket, as a reload does, then waits a bounded time
for an answer newer than the ask. The daemon takes what is asked between items
(:meth:`CameraRequests.take`) and answers each kind once: viewers asking at the same moment
share one frame. An ask nobody waits for any more is withdrawn unless the daemon has taken it: a
calibration the page gave up on does not happen later. Nothing here touches hardware.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("snapshot", "calibrate", "test")


@dataclass(frozen=True)
class Answer:
    """What the daemon did for an ask: its ``value``, or ``error`` (one line) when it could not."""

    serial: int  # answers every ask of its kind up to this number
    value: Any = None
    error: str | None = None


class CameraRequests:
    """The desk between the page's threads and the daemon's; ``wake`` wakes the daemon's loop."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._changed = threading.Condition()
        self._serial = 0
        self._asked: dict[str, int] = {}  # kind -> the newest ask not yet taken
        self._waiting: dict[str, int] = dict.fromkeys(KINDS, 0)  # askers still waiting, per kind
        self._answers: dict[str, Answer] = {}
        self._closed: str | None = None  # why no ask is answered any more

    def ask(self, kind: str, timeout: float) -> Answer | None:
        """The daemon's answer to a new ask of ``kind``; None when none came within ``timeout`` s."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._changed:
            if self._closed is not None:
                return Answer(self._serial, error=self._closed)
            self._serial += 1
            mine = self._asked[kind] = self._serial
            self._waiting[kind] += 1
        self._wake()
        with self._changed:
            answered = self._changed.wait_for(
                lambda: self._closed is not None or self._answer_for(kind, mine) is not None, timeout
            )
            self._waiting[kind] -= 1
            if not answered:
                if not self._waiting[kind]:
                    self._asked.pop(kind, None)
                return None
            return self._answer_for(kind, mine) or Answer(mine, error=self._closed)

    def _answer_for(self, kind: str, serial: int) -> Answer | None:
        answer = self._answers.get(kind)
        return answer if answer is not None and answer.serial >= serial else None

    def take(self) -> dict[str, int]:
        """What is asked, kind -> serial to answer with (the daemon's thread, between items)."""
        with self._changed:
            asked, self._asked = self._asked, {}
        return asked

    def answer(self, kind: str, serial: int, value: Any = None, error: str | None = None) -> None:
        with self._changed:
            self._answers[kind] = Answer(serial, value, error)
            self._changed.notify_all()

    def close(self, why: str) -> None:
        """Answer every waiting ask, and each later one, with ``why`` (the bin stops)."""
        with self._changed:
            self._closed = why
            self._changed.notify_all()
