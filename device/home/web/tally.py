"""What the page and the metrics count, kept from the daemon's hooks by the web's worker thread.

Only the worker changes a :class:`Tally`; after each change it publishes :meth:`Tally.snapshot`,
a fresh dict that nobody changes again, so the server's threads read it without a lock.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ...records.events import ERROR_KINDS, ItemEvent

# Latency histogram buckets, in seconds (Prometheus' base unit); +Inf follows.
INFERENCE_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
CYCLE_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
EMPTY = "empty"  # an event's reason for an empty chamber, and the label of a model's empty class


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, the last one +Inf
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of values <= le), ..., ("+Inf", all)]``, as Prometheus wants them."""
        out, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def fault_kinds(error: str | None) -> list[str]:
    """``camera``, ``servo``, ``image``... from an event's error (``"servo: stuck; image: disk full"``).

    A part that does not start with a known kind continues the part before it (a message with
    "; " in it is one fault); an error that starts with none is one ``unknown`` fault.
    """
    kinds = []
    for part in (error or "").split("; "):
        kind, sep, _ = part.partition(":")
        if sep and kind in ERROR_KINDS:
            kinds.append(kind)
        elif part and not kinds:
            kinds.append("unknown")
    return kinds


def local_day(ts: str) -> date:
    return datetime.fromisoformat(ts).astimezone().date()


class Tally:
    """Counts since the daemon started (for the metrics), and per compartment today and in all
    (for the page: the event log's counts at start plus the items since)."""

    def __init__(self, compartments: list[str]) -> None:
        self.compartments = [*compartments, "none"]
        self.items: Counter[tuple[str, str]] = Counter()  # (label, compartment) since start
        self.empty = 0
        self.faults: Counter[str] = Counter()
        self.reviews = 0
        self.inference = Histogram(INFERENCE_BUCKETS_S)
        self.cycle = Histogram(CYCLE_BUCKETS_S)
        self.total: Counter[str] = Counter()
        self.day = date.today()
        self.today: Counter[str] = Counter()
        self.counted_up_to = 0  # events up to this id are in total and today already

    def start_from(self, total: dict[str, int], today: dict[str, int], last_id: int) -> None:
        """The event log's counts up to event ``last_id``, read when the web started."""
        self.total.update(total)
        self.today.update(today)
        self.counted_up_to = last_id

    def add(self, event: ItemEvent) -> None:
        compartment = event.compartment or "none"
        self.items[(event.label or "none", compartment)] += 1
        self.empty += event.reason == EMPTY or event.label == EMPTY
        self.faults.update(fault_kinds(event.error))
        if event.label is not None:  # inference ran
            self.inference.observe(event.inference_ms / 1000)
        self.cycle.observe(event.cycle_ms / 1000)
        if event.id is not None and event.id <= self.counted_up_to:
            return
        self.total[compartment] += 1
        day = local_day(event.ts)
        if day != self.day:
            self.day, self.today = day, Counter()
        self.today[compartment] += 1

    def snapshot(self) -> dict[str, Any]:
        today = self.today if self.day == date.today() else Counter()
        return {
            "compartments": {
                "today": {name: today[name] for name in self.compartments},
                "total": {name: self.total[name] for name in self.compartments},
            },
            "items": dict(self.items),
            "empty": self.empty,
            "faults": dict(self.faults),
            "reviews": self.reviews,
            "inference": (self.inference.cumulative(), self.inference.sum),
            "cycle": (self.cycle.cumulative(), self.cycle.sum),
        }
