"""``GET /metrics``: the bin in the Prometheus text format, from the web's snapshot.

prometheus_client writes the format (3.5 MB and about 30 ms of import on the development
machine: docs/device.md, Review page); a private registry holds one collector that reads the
snapshot, so nothing here keeps state of its own or takes a lock the daemon could meet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BinCollector(Collector):
    def __init__(self, read: Callable[[], tuple[dict[str, Any], dict[str, Any]]]) -> None:
        self.read = read  # -> (the daemon's status, the tally's snapshot)

    def collect(self) -> Iterator[Metric]:
        status, tally = self.read()
        items = CounterMetricFamily(
            "smartbin_items",
            "Items handled since the daemon started, by top-1 label and compartment (none: no move)",
            labels=["label", "compartment"],
        )
        for (label, compartment), count in sorted(tally["items"].items()):
            items.add_metric([label, compartment], count)
        yield items
        yield CounterMetricFamily(
            "smartbin_empty_closings",
            "Lid closings on an empty chamber since the daemon started",
            tally["empty"],
        )
        faults = CounterMetricFamily(
            "smartbin_item_faults",
            "Items with an error since the daemon started, by what failed (camera, servo, image...)",
            labels=["kind"],
        )
        for kind, count in sorted(tally["faults"].items()):
            faults.add_metric([kind], count)
        yield faults
        yield CounterMetricFamily("smartbin_reviews", "Items relabelled on the review page", tally["reviews"])
        for name, key, what in (
            ("smartbin_inference_seconds", "inference", "Classification time of an item (all its frames)"),
            ("smartbin_cycle_seconds", "cycle", "Lid closed to servos home, per item"),
        ):
            buckets, total = tally[key]
            yield HistogramMetricFamily(name, what, buckets=buckets, sum_value=total)
        yield InfoMetricFamily(
            "smartbin_model", "The model that sorts", value={"version": status.get("model_version") or ""}
        )
        warnings = GaugeMetricFamily("smartbin_warnings", "Faults the bin lives with now (smartbin status)")
        warnings.add_metric([], len(status.get("warnings") or []))
        yield warnings
        fill = status.get("fill")
        if fill:
            gauge = GaugeMetricFamily(
                "smartbin_fill_percent", "Fill level per compartment", labels=["compartment"]
            )
            for name, level in fill.items():
                if level.get("percent") is not None:
                    gauge.add_metric([name], level["percent"])
            yield gauge


def make_registry(read: Callable[[], tuple[dict[str, Any], dict[str, Any]]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BinCollector(read))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
