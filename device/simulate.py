"""The bin without hardware: the real daemon on gpiozero's mock pins and the folder camera.

For each image the simulation closes the lid by driving the mock lid pin, waits for the item's
event (no sleeping), and opens the lid again. Only the pins, the camera and the state directory
differ from a real bin: the item cycle, classifier, decision, servos and event log are the ones
``smartbin run`` uses. State (event log, status.json) goes to a temporary directory unless a
``state_dir`` is given, so a simulation never mixes into a real bin's records.
"""

from __future__ import annotations

import queue
import statistics
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .cameras import SAMPLES_DIR, FolderCamera, list_images
from .config import Config, PathsConfig
from .daemon import Daemon
from .errors import SmartbinError
from .events import ItemEvent
from .lid import closed_level
from .notify import Notifier
from .pins import make_pin_factory

ITEM_TIMEOUT_S = 60.0  # far above any cycle; reaching it means the daemon is stuck


@dataclass
class SimulatedItem:
    image: Path
    truth: str | None  # the folder name, when it is one of the model's labels
    event: ItemEvent


@dataclass
class Summary:
    items: int = 0
    by_compartment: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    per_class: dict[str, Counter[str]] = field(default_factory=dict)  # truth -> {n, correct, sorted}
    errors: int = 0
    model_version: str | None = None

    def add(self, item: SimulatedItem, expected_compartment: str | None) -> None:
        event = item.event
        self.items += 1
        self.by_compartment[event.compartment or "no move"] += 1
        self.latencies_ms.append(event.latency_ms)
        self.errors += event.error is not None
        self.model_version = event.model_version
        if item.truth is not None:
            counts = self.per_class.setdefault(item.truth, Counter())
            counts["n"] += 1
            counts["correct"] += event.label == item.truth
            counts["sorted"] += event.compartment is not None and event.compartment == expected_compartment

    def lines(self) -> list[str]:
        out = [f"{self.items} items, model {self.model_version}"]
        if self.latencies_ms:
            lat = sorted(self.latencies_ms)
            p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
            out.append(
                f"latency (lid closed -> servo command, settle excluded): median {statistics.median(lat):.1f} ms, p95 {p95:.1f} ms, max {lat[-1]:.1f} ms"
            )
        out.append("compartments: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_compartment.items())))
        for truth, counts in sorted(self.per_class.items()):
            n = counts["n"]
            out.append(
                f"  {truth:<10} {counts['correct']}/{n} classified right ({counts['correct'] / n:.0%}), "
                f"{counts['sorted']}/{n} sorted into its compartment"
            )
        if self.per_class:
            n = sum(c["n"] for c in self.per_class.values())
            correct = sum(c["correct"] for c in self.per_class.values())
            out.append(f"accuracy: {correct}/{n} ({correct / n:.1%})")
        if self.errors:
            out.append(f"items with errors: {self.errors}")
        return out


def simulation_config(
    config: Config, *, model: Path | None, fast: bool, state_dir: Path, images: Path
) -> Config:
    """The config with mock pins, the folder camera, a separate state dir, and no waits with ``fast``."""
    paths = PathsConfig(
        state_dir=state_dir,
        models_dir=config.paths.models_dir,  # read only: the simulation may run the bin's current model
        events_db=state_dir / "events.db",
        images_dir=state_dir / "images",
    )
    config = replace(
        config,
        paths=paths,
        gpio=replace(config.gpio, pin_factory="mock"),
        camera=replace(config.camera, kind="folder", source=str(images), controls={}),
    )
    if model is not None:
        config = replace(config, classifier=replace(config.classifier, model=model))
    if fast:
        config = replace(
            config,
            lid=replace(config.lid, settle_s=0.0),
            sorting=replace(config.sorting, travel_s=0.0, hold_s=0.0),
        )
    return config


@contextmanager
def _state_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="smartbin-sim-") as tmp:
        yield Path(tmp)


def _truth(image: Path, root: Path, labels: tuple[str, ...]) -> str | None:
    if root.is_file():
        return None
    try:
        parts = image.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in labels else None


def simulate(
    config: Config,
    *,
    images: Path | None = None,
    model: Path | None = None,
    fast: bool = False,
    repeat: int = 1,
    state_dir: Path | None = None,
    on_item: Callable[[SimulatedItem], None] | None = None,
) -> Summary:
    """Run one item per image (``repeat`` times over) through the daemon; return the summary."""
    if repeat < 1:
        raise SmartbinError(f"--repeat must be 1 or more, got {repeat}")
    if images is None:
        source = config.camera.source if config.camera.kind == "folder" else None
        images = Path(str(source)) if source is not None else SAMPLES_DIR
    paths = list_images(images)
    with _state_dir(state_dir) as state:
        cfg = simulation_config(config, model=model, fast=fast, state_dir=state, images=images)
        factory = make_pin_factory("mock")
        done: queue.Queue[ItemEvent | BaseException] = queue.Queue()
        camera = FolderCamera(images, frames_per_image=cfg.classifier.frames, loop=repeat > 1)
        daemon = Daemon(cfg, pin_factory=factory, camera=camera, notifier=Notifier({}), on_item=done.put)
        try:
            daemon.start()
        except BaseException:
            daemon.shutdown()
            factory.close()
            raise
        labels = daemon.classifier.bundle.labels

        def serve() -> None:
            try:
                daemon.serve()
            except BaseException as exc:  # hand it to the waiting thread instead of a silent timeout
                done.put(exc)
                raise

        server = threading.Thread(target=serve, name="smartbin-daemon", daemon=True)
        server.start()
        lid_pin = factory.pin(cfg.lid.pin)
        closed = closed_level(cfg.lid)
        summary = Summary()
        timeout = (
            ITEM_TIMEOUT_S
            + cfg.lid.settle_s
            + cfg.sorting.hold_s
            + 2 * len(cfg.servos) * cfg.sorting.travel_s
        )
        try:
            _drive(lid_pin, not closed)
            for image in paths * repeat:
                _drive(lid_pin, closed)
                try:
                    event = done.get(timeout=timeout)
                except queue.Empty:
                    raise SmartbinError(
                        f"no event {timeout:.0f} s after closing the lid for {image}; the daemon is stuck"
                    ) from None
                if isinstance(event, BaseException):
                    raise SmartbinError(f"the daemon stopped at {image}: {event!r}") from event
                _drive(lid_pin, not closed)
                # the camera says which photo it showed (a photo that cannot be decoded is skipped)
                shown = Path(event.source) if event.source else image
                item = SimulatedItem(image=shown, truth=_truth(shown, images, labels), event=event)
                expected = cfg.sorting.labels.get(item.truth) if item.truth else None
                summary.add(item, expected)
                if on_item is not None:
                    on_item(item)
        finally:
            daemon.request_stop()
            server.join(timeout=timeout)
            factory.close()
    return summary


def _drive(pin: object, level: bool) -> None:
    if level:
        pin.drive_high()
    else:
        pin.drive_low()
