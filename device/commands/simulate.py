"""The bin without hardware: the real daemon on gpiozero's mock pins and the folder camera.

For each image the simulation closes the lid by driving the mock lid pin, waits for the item's
event (no sleeping), and opens the lid again. Only the pins, the camera and the state directory
differ from a real bin: the item cycle, classifier, decision, servos and event log are the ones
``smartbin run`` uses. State (event log, status.json) goes to a temporary directory unless a
``state_dir`` is given, so a simulation never mixes into a real bin's records.

With ``[fill.NAME]`` sections, each compartment's sensor answers on its mock pins from a
simulated level that rises by ``FILL_PER_ITEM`` percent per item; the simulation waits for the
daemon's reading after each such item, so every line shows the level the next item meets.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .. import interrupts
from ..config import Config
from ..daemon import Daemon
from ..decision import EMPTY
from ..errors import SmartbinError, os_error_reason
from ..files import printable_path
from ..hardware.cameras import SAMPLES_DIR, FolderCamera, list_images
from ..hardware.fill import script_sensor
from ..hardware.lid import closed_level
from ..hardware.pins import make_pin_factory
from ..home.notify import Notifier
from ..home.observer_setup import make_observers
from ..home.observers import Observer
from ..home.web.signin import Link, make_link
from ..home.web.token import create_token, current_token_file, token_path
from ..records.events import ItemEvent
from ..records.settings import PathsConfig
from ..updates.settings import UpdatesConfig

ITEM_TIMEOUT_S = 60.0  # far above any cycle; reaching it means the daemon is stuck
FILL_PER_ITEM = 10.0  # percent of a compartment one simulated item fills

T = TypeVar("T")


class DeferredInterrupts:
    """Ctrl-C and SIGTERM noted by a handler and raised by :meth:`check` between steps of the simulation.

    Raised wherever the main thread happens to be, a KeyboardInterrupt can leave a lock held that the
    daemon's thread needs (a ``with`` block is not interrupt-safe), and the simulation would hang at its
    shutdown. Only the main thread can take signals; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> DeferredInterrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: object) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            interrupts.raise_for(self.signum)


def _next_from(waiting: queue.Queue[T], timeout: float, interrupts: DeferredInterrupts) -> T | None:
    """The queue's next entry, or None after ``timeout`` s; an interrupt is raised within 0.1 s."""
    deadline = time.monotonic() + timeout
    while True:
        interrupts.check()
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return waiting.get(timeout=min(left, 0.1))
        except queue.Empty:
            continue


@dataclass
class SimulatedItem:
    image: Path
    truth: str | None  # the folder name, when it is one of the model's labels
    event: ItemEvent
    feedback: str | None = None  # what the lid's LED shows after the item ([feedback])
    fill: dict[str, dict] | None = None  # the fill levels read after the item ([fill.NAME])


class SimulatedFill(Observer):
    """Fill sensors on mock pins: every item sorted into a compartment fills it by
    ``FILL_PER_ITEM`` percent; the daemon's fill readings are queued in :attr:`readings`."""

    def __init__(self, config: Config, factory: object) -> None:
        self.config = config
        self.percent = dict.fromkeys(config.fill, 0.0)
        self.readings: queue.Queue[dict[str, dict]] = queue.Queue()
        for name, sensor in config.fill.items():
            script_sensor(factory, sensor, lambda name=name: self._distance_cm(name))

    def _distance_cm(self, name: str) -> float:
        sensor = self.config.fill[name]
        return sensor.empty_cm - min(self.percent[name], 100.0) / 100 * (sensor.empty_cm - sensor.full_cm)

    def item(self, event: ItemEvent, status: object) -> None:
        if event.compartment in self.percent:
            self.percent[event.compartment] += FILL_PER_ITEM

    def status_changed(self, status: dict) -> None:
        if "fill" in status:
            self.readings.put(status["fill"])

    def next_reading(self, timeout: float, interrupts: DeferredInterrupts) -> dict[str, dict]:
        reading = _next_from(self.readings, timeout, interrupts)
        if reading is None:
            raise SmartbinError(f"no fill reading {timeout:.0f} s after an item; the daemon is stuck")
        return reading

    def forget_readings(self) -> None:
        while not self.readings.empty():
            self.readings.get_nowait()


@dataclass
class Summary:
    """What a simulation did. Accuracy counts the items that have a truth and were classified;
    an item whose photo gave no frame (a capture fault) is counted apart, never as a wrong answer."""

    items: int = 0
    by_compartment: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    per_class: dict[str, Counter[str]] = field(default_factory=dict)  # truth -> {n, correct, sorted}
    errors: int = 0
    capture_faults: int = 0  # items never classified (no frame: unreadable photo, camera failure)
    empty: int = 0  # closings the empty check found empty (never classified, not counted in accuracy)
    model_version: str | None = None
    review_page: str | None = None  # --web: where the page is

    def add(self, item: SimulatedItem, expected_compartment: str | None) -> None:
        event = item.event
        self.items += 1
        self.by_compartment[event.compartment or "no move"] += 1
        self.latencies_ms.append(event.latency_ms)
        self.errors += event.error is not None
        self.empty += event.reason == EMPTY
        self.capture_faults += event.label is None and event.reason != EMPTY
        self.model_version = event.model_version
        if item.truth is not None and event.label is not None:
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
        if self.empty:
            out.append(f"empty: {self.empty} closing(s) found the chamber empty (no move, no inference)")
        if self.capture_faults:
            out.append(
                f"capture faults: {self.capture_faults} item(s) not classified, not counted in accuracy"
            )
        if self.errors:
            out.append(f"items with errors: {self.errors}")
        return out


def simulation_config(
    config: Config, *, model: Path | None, fast: bool, state_dir: Path, images: Path
) -> Config:
    """The config with mock pins, the folder camera, a separate state dir and MQTT bin id
    (``<bin_id>-sim``), no updates of its own, and no waits with ``fast``."""
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
        updates=UpdatesConfig(),  # never: an update would switch the real bin's models_dir
    )
    if config.mqtt.host:  # published apart from the real bin (another id, another MQTT client)
        config = replace(config, mqtt=replace(config.mqtt, bin_id=f"{config.mqtt.bin_id}-sim"))
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
    web: str | None = None,
    on_page: Callable[[str, Link | str], None] | None = None,
    on_done: Callable[[Summary], None] | None = None,
) -> Summary:
    """Run one item per image (``repeat`` times over) through the daemon; return the summary.

    ``web`` (``HOST:PORT``) serves the review page with photos saved; ``on_page`` is given its URL
    and a sign-in link (or why there is none) before the first item; ``on_done`` is called after
    the last item, while the daemon (and its page) still runs.
    """
    if repeat < 1:
        raise SmartbinError(f"--repeat must be 1 or more, got {repeat}")
    if images is None:
        source = config.camera.source if config.camera.kind == "folder" else None
        images = Path(str(source)) if source is not None else SAMPLES_DIR
    paths = list_images(images)
    if web is not None:
        _check_listen(web)
    with _state_dir(state_dir) as state:
        cfg = simulation_config(config, model=model, fast=fast, state_dir=state, images=images)
        token_files: tuple[Path, ...] = ()
        if web is not None:
            cfg, token_files = with_web(cfg, web, token_path(config))
        factory = make_pin_factory("mock")
        done: queue.Queue[ItemEvent | BaseException] = queue.Queue()
        camera = FolderCamera(images, frames_per_image=cfg.classifier.frames, loop=repeat > 1)
        fill = SimulatedFill(cfg, factory) if cfg.fill else None
        daemon = Daemon(
            cfg,
            pin_factory=factory,
            camera=camera,
            notifier=Notifier({}),
            observers=[*make_observers(cfg, token_files), *([fill] if fill else [])],
            on_item=done.put,
        )
        try:
            daemon.start()
        except BaseException:
            daemon.shutdown()
            factory.close()
            raise
        labels = daemon.classifier.bundle.labels
        if fill is not None and fast:
            daemon.fill.ping_gap_s = 0.0  # mock pins leave no echo to die away

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
            if web is not None:
                page = _page_url(daemon)
                summary.review_page = f"review page at {page}; Ctrl-C stops it"
                if on_page is not None:
                    on_page(page, _sign_in_link(page, current_token_file(token_files)))
            with DeferredInterrupts() as interrupts:
                _drive(lid_pin, not closed)
                levels = fill.next_reading(timeout, interrupts) if fill is not None else None
                in_turn = itertools.chain.from_iterable(itertools.repeat(paths, repeat))  # N may be huge
                for image in in_turn:
                    interrupts.check()
                    if fill is not None:
                        fill.forget_readings()  # a reading from before this item is not the one after it
                    _drive(lid_pin, closed)
                    event = _next_from(done, timeout, interrupts)
                    if event is None:
                        raise SmartbinError(
                            f"no event {timeout:.0f} s after closing the lid for {image}; the daemon is stuck"
                        )
                    if isinstance(event, BaseException):
                        raise SmartbinError(f"the daemon stopped at {image}: {event!r}") from event
                    _drive(lid_pin, not closed)
                    if event.source is not None and event.source != printable_path(image):
                        raise SmartbinError(
                            f"the camera showed {event.source} for the item of {image}; the simulation is out of step"
                        )
                    shown = daemon.feedback.shown if daemon.feedback else None  # before it fades
                    if fill is not None and event.compartment in cfg.fill:
                        levels = fill.next_reading(timeout, interrupts)
                    item = SimulatedItem(
                        image=image,
                        truth=_truth(image, images, labels),
                        event=event,
                        feedback=shown,
                        fill=levels,
                    )
                    expected = cfg.sorting.labels.get(item.truth) if item.truth else None
                    summary.add(item, expected)
                    if on_item is not None:
                        on_item(item)
            if on_done is not None:
                on_done(summary)
        finally:
            daemon.request_stop()
            server.join(timeout=timeout)
            factory.close()
    return summary


def with_web(config: Config, listen: str, bin_token: Path) -> tuple[Config, tuple[Path, ...]]:
    """The simulation's config with the review page on ``listen`` and photos saved, and the token
    files its page checks, in turn (:func:`~..home.web.token.current_token_file`): the bin's, while
    this user can read it (one made by ``smartbin web token`` as the simulation runs counts at
    once), else the one in the simulation's state dir, made now unless a kept ``--state-dir`` has it.
    """
    own = config.paths.state_dir / "web-token"
    token_files = (bin_token, own) if bin_token != own else (own,)
    if not any(p.is_file() and os.access(p, os.R_OK) for p in token_files):
        create_token(own)
    web = replace(config.web, listen=listen, token_file=own)
    return replace(config, web=web, images=replace(config.images, save=True)), token_files


def _sign_in_link(page: str, token_file: Path) -> Link | str:
    """A sign-in link to the simulation's page, or why there is none (a token folder this user
    cannot write: the simulation runs on without one)."""
    address = urllib.parse.urlsplit(page)
    try:
        return make_link(token_file, address.hostname, address.port)
    except SmartbinError as exc:
        return f"no sign-in link: {exc}"


def _check_listen(listen: str) -> None:
    """Refuse ``--web``'s address before the daemon starts: the daemon's page would only log it and
    sort on, as a bin must, while a simulation asked for the page stops."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the page's server does
            probe.bind((host, int(port)))
    except OSError as exc:
        raise SmartbinError(f"--web: cannot listen on {listen}: {os_error_reason(exc)}") from None


def _page_url(daemon: Daemon) -> str:
    page = next(o for o in daemon.observers if o.name == "web")
    if page.url is None:
        raise SmartbinError(f"--web: {page.error}")
    return page.url


def _drive(pin: object, level: bool) -> None:
    if level:
        pin.drive_high()
    else:
        pin.drive_low()
