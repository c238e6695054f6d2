"""The bin's daemon: wait for the lid, then handle one item at a time.

The path of one item is :meth:`Daemon.handle_item`::

    lid closed -> settle -> capture N frames -> capture check, empty? -> [crop] -> classify (vote)
      -> decide -> move -> hold -> home -> record

The empty check (:mod:`.vision.chamber`) runs when ``smartbin calibrate`` has set an empty reference.

Threads: gpiozero calls :meth:`Daemon._on_lid_closed` from its own thread (or, with mock pins,
from whoever drives the pin); signal handlers run on the main thread; the review page asks for
the camera through :attr:`Daemon.requests`. All of them only set flags and write one byte to a
wake-up socket; everything else happens on the thread running :meth:`Daemon.serve`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero import DigitalOutputDevice, GPIOZeroError

from . import config_reload
from .config import Config
from .decision import UNRECORDED, Decision, decide
from .errors import CameraError, SmartbinError, os_error_message, os_error_reason
from .files import printable_path
from .hardware.cameras import Camera, create_camera
from .hardware.cameras.base import one_line
from .hardware.fill import FillLevels
from .hardware.lid import LidSensor
from .hardware.pins import make_pin_factory
from .hardware.sorter import Sorter
from .home.camera_requests import CameraRequests
from .home.feedback import Feedback
from .home.notify import Notifier
from .home.observers import Observer, Observers
from .records.events import ItemEvent
from .records.lock import StateDirLock, shared_paths
from .records.photos import Photos
from .records.recorder import EventRecords
from .records.state import HEARTBEAT_S, now_iso, write_status
from .thresholds import Threshold, as_status, thresholds_in_force
from .updates.on_bin import BinUpdates
from .updates.source import UpdateSource
from .vision.chamber import (
    CALIBRATION_FRAMES,
    FAULT_TEXT,
    Chamber,
    Look,
    crop_box,
    load_reference,
    save_reference,
    take_frames,
)
from .vision.classifier import Classifier, Prediction
from .vision.model import load_classifier, resolve_model_path

log = logging.getLogger(__name__)

IDLE_WAKE_S = 1.0  # how often the main loop wakes when nothing happens and no watchdog asks for more
# status.json after an item is written at most this often (a rename costs milliseconds and wears
# an SD card); start, reload and stop write it at once.
STATUS_INTERVAL_S = 1.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Daemon:
    """Owns the hardware, the model and the event log of one bin.

    ``pin_factory`` and ``camera`` replace what the config names (tests, simulation);
    ``observers`` listen to the bin (see :mod:`.home.observers`); ``on_item`` is called with each
    recorded :class:`ItemEvent`; ``update_source`` replaces the TUF source that ``[updates] url``
    asks for (tests; with it the bin checks for updates whatever the url).
    """

    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Any = None,
        camera: Camera | None = None,
        notifier: Notifier | None = None,
        observers: Sequence[Observer] = (),
        on_item: Callable[[ItemEvent], None] | None = None,
        update_source: UpdateSource | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.observers = Observers(observers)
        self.on_item = on_item
        self._own_factory = pin_factory is None
        self.pin_factory = pin_factory
        self.camera = camera
        self.classifier: Classifier | None = None
        self.model_path: Path | None = None
        paths = config.paths
        self.state_lock = StateDirLock(paths.state_dir, shared_paths(paths, config.images))
        self.state_dir_error: str | None = None  # why the state directory cannot be written
        self.records = EventRecords(config.paths.events_db)
        self.photos = Photos(config.images, paths.images_dir, paths.events_db) if config.images.save else None
        self.last_reload: dict[str, Any] | None = None
        self._status_error: str | None = None  # the last failure to write status.json, logged once
        self.sorter: Sorter | None = None
        self.lid: LidSensor | None = None
        self.fill: FillLevels | None = None  # the fill sensors, when the config has [fill.NAME]
        self.feedback: Feedback | None = None  # the lid's LED and buzzer, when [feedback] has pins
        self.light: DigitalOutputDevice | None = None  # the chamber's light, when [light] has a pin
        self.chamber: Chamber | None = None  # the empty check (inactive without a reference)
        self._refresh_due: float | None = None  # when an idle frame may refresh the empty reference
        self.items = 0
        self.ignored_closings = 0
        self.last_item: dict[str, Any] | None = None
        self.state = "starting"
        self.started = now_iso()
        self._lock = threading.Lock()
        self._pending: float | None = None  # monotonic time of a lid closing not yet handled
        self._busy = False
        self._stop = False
        self._reload = False
        self.status_interval_s = STATUS_INTERVAL_S
        self._status_due: float | None = None  # when the deferred status.json write is due
        self._detach_due: float | None = None  # when the servos homed at start-up may be detached
        self._status_written = 0.0
        self._observers_written: dict[str, Any] | None = None  # observers' status in status.json
        self._observers_checked = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.requests = CameraRequests(self._poke)  # the page's asks for the camera, served between items
        self._update_source = update_source
        self.updates: BinUpdates | None = None  # checked and fetched on a thread of their own
        self._last_input: np.ndarray | None = None  # the last frame the model saw (the health check's)

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Lock the state dir, load the model, open the event log, home the servos, arm the lid,
        open the camera. No state of the bin's own files stops it: it then sorts without them."""
        cfg = self.config
        self._lock_state_dir()
        self.model_path, self.classifier = self._load_model()
        log.info("model %s from %s (%s)", self.model_version, self.model_path, self.classifier.runtime)
        self.records.open()
        if self.photos is not None:
            self.photos.open()
            self._adopt_orphan_photos()
        if self.pin_factory is None:
            self.pin_factory = make_pin_factory(cfg.gpio.pin_factory)
        try:
            self.sorter = Sorter(cfg, pin_factory=self.pin_factory)
            self._detach_due = self.sorter.start_homing()  # READY does not wait for the servos to arrive
            self.lid = LidSensor(cfg.lid, pin_factory=self.pin_factory, on_close=self._on_lid_closed)
            if cfg.fill:  # the first reading once the servos are home
                homed = time.monotonic() + cfg.sorting.travel_s * len(cfg.servos)
                self.fill = FillLevels(cfg.fill, pin_factory=self.pin_factory, first_at=homed)
            if cfg.feedback.enabled:
                self.feedback = Feedback(cfg.feedback, pin_factory=self.pin_factory)
                self.observers.add(self.feedback)
            if cfg.light.pin is not None:
                self.light = DigitalOutputDevice(
                    cfg.light.pin, active_high=cfg.light.active_high, pin_factory=self.pin_factory
                )
        except (GPIOZeroError, OSError) as exc:
            pins: dict[str, list[str]] = {}
            for key, pin in cfg.pins():
                pins.setdefault(key.split(".")[0], []).append(str(pin))
            used = ", ".join(f"{section} {', '.join(numbers)}" for section, numbers in pins.items())
            raise SmartbinError(
                f"cannot set up the GPIO pins ({used}) with pin factory {cfg.gpio.pin_factory!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if self.camera is None:
            self.camera = create_camera(
                cfg.camera.kind,
                width=cfg.camera.width,
                height=cfg.camera.height,
                source=cfg.camera.source,
                frames_per_image=cfg.classifier.frames if cfg.camera.kind == "folder" else 1,
                controls=cfg.camera.controls or None,
            )
        self.camera.open()
        self.chamber = Chamber(cfg.paths.state_dir, cfg.empty, cfg.camera)
        self._schedule_refresh()
        self.updates = BinUpdates(cfg, self._update_source, wake=self._poke)
        self.updates.start(self.model_version)
        self.state = "ready"
        self._write_status()
        self.notifier.ready(self._status_line())
        self.observers.notify("attach", self.requests)
        if self.updates.updater is not None:
            self.observers.notify("attach_updates", self.updates.updater.check_now)
        self.observers.notify("started", self.status())
        log.info(
            "ready: model %s, camera %s, lid on GPIO %d", self.model_version, self.camera.name, cfg.lid.pin
        )

    def _lock_state_dir(self) -> None:
        """One daemon per state dir; a second one raises :class:`SmartbinError` naming the first."""
        try:
            self.state_lock.acquire()
        except OSError as exc:
            self.state_dir_error = (
                f"cannot write the state directory {self.config.paths.state_dir} ({os_error_message(exc)})"
            )
            log.error(
                "%s; the bin sorts WITHOUT status.json, and a second daemon on it would go unnoticed",
                self.state_dir_error,
            )

    def _adopt_orphan_photos(self) -> None:
        """A photo newer than the newest event lost its event to a power cut between the two
        writes (a photo has its event's time): record it, so the page and ``collect`` see it."""
        store = self.photos.store
        newest = self.records.log.newest_ts() if self.records.log is not None and store else None
        if newest is None:
            return
        for path, taken, label in store.newer_than(newest):
            self.records.record(
                ItemEvent(
                    ts=taken.isoformat(timespec="milliseconds"),
                    label=label,
                    confidence=None,
                    scores={},
                    compartment=None,
                    reason=UNRECORDED,
                    model_version=None,
                    frames=1,
                    capture_ms=0.0,
                    inference_ms=0.0,
                    latency_ms=0.0,
                    image_path=str(path),
                    error="unknown: the photo was saved but the bin stopped before recording the item "
                    "(a power cut?); where it went is not known",
                )
            )
            log.warning("recorded an item the bin stopped before recording, from its photo %s", path)

    def serve(self) -> None:
        """The main loop: until asked to stop, handle lid closings and reloads; then shut down."""
        interval = self.notifier.watchdog_interval
        timeout = min(IDLE_WAKE_S, interval / 2) if interval else IDLE_WAKE_S
        try:
            while True:
                self.notifier.watchdog()
                if self._reload:
                    self._reload = False
                    self.reload()
                triggered = self._take_closing()
                if triggered is not None:  # before stopping: an item in the bin is finished
                    try:
                        self.handle_item(triggered)
                    finally:
                        with self._lock:
                            self._busy = False
                    continue
                if self._stop:
                    break
                if self._serve_requests():
                    continue
                if self._serve_update():
                    continue
                if self._run_timers():
                    continue
                wait = timeout
                dues = (
                    self._status_due,
                    self._detach_due,
                    self._refresh_due,
                    self.fill.due if self.fill else None,
                )
                for due in dues:
                    if due is not None:
                        wait = min(wait, due - time.monotonic())
                select.select([self._wake_r], [], [], max(wait, 0.0))
                self._drain_wake()
        finally:
            self.shutdown()

    def _run_timers(self) -> bool:
        """Do what was deferred and is now due (detach after start-up homing, a fill sensor's
        ping, status write). Only between items: nothing here runs while a servo moves."""
        now = time.monotonic()
        ran = False
        if self._detach_due is not None and now >= self._detach_due:
            self._detach_due = None
            self.sorter.detach()
            ran = True
        if self.fill is not None and now >= self.fill.due:
            if self.fill.ping():  # a reading finished: status.json and observers hear of it
                self._status_due = self._status_due or max(now, self._status_written + self.status_interval_s)
                self.observers.notify("status_changed", self.status())
            ran = True
        if self.records.waiting and self.records.flush():  # another program let go of the event log
            self._write_status()
            ran = True
        if self._refresh_due is not None and now >= self._refresh_due:
            self._refresh_reference()
            ran = True
        if (
            self._status_due is not None and now >= self._status_due
        ) or now - self._status_written >= HEARTBEAT_S:
            self._write_status()
            ran = True
        if self.observers and now - self._observers_checked >= IDLE_WAKE_S:
            # an observer's own state (an MQTT connection lost while idle) reaches status.json too
            self._observers_checked = now
            if self.observers.status() != self._observers_written:
                self._write_status()
                ran = True
        return ran

    def run(self) -> None:
        """start() then serve(); whatever opened is closed again if start-up fails."""
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        self.serve()

    def shutdown(self) -> None:
        """Home the servos, close camera, pins and log. Safe to call more than once."""
        if self.state == "stopped":
            return
        self.state = "stopping"
        self.requests.close("the bin is stopping")
        if self.updates is not None:
            self.updates.stop()
        self.notifier.stopping()
        self.observers.notify("stopping")
        if self.lid is not None:
            self.lid.close()
        if self.fill is not None:
            self.fill.close()
        if self.light is not None:
            self.light.close()
        if self.sorter is not None:
            try:
                self.sorter.home()
            except Exception as exc:  # the hardware boundary: report, keep closing the rest
                log.error("could not home the servos on shutdown: %s", exc)
            self.sorter.close()
        if self.camera is not None:
            self.camera.close()
        self.records.close()
        if self.pin_factory is not None and self._own_factory:
            self.pin_factory.close()
        self.state = "stopped"
        if self.classifier is not None:
            self._write_status()
        self.state_lock.release()
        self.notifier.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("stopped after %d items", self.items)

    # --- requests from other threads and signal handlers ------------------------------

    def request_stop(self) -> None:
        """Finish the current item, then stop (safe from a signal handler)."""
        self._stop = True
        self._poke()

    def request_reload(self) -> None:
        """Reload the model between items (safe from a signal handler)."""
        self._reload = True
        self._poke()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads; the handlers only set flags (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # buffer full (already awake) or closed (stopped)
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while self._wake_r.recv(256):
                pass

    def _on_lid_closed(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._busy or self._pending is not None:
                self.ignored_closings += 1  # a bounce or a re-trigger during an item
                return
            self._pending = now
        self._poke()

    def _take_closing(self) -> float | None:
        with self._lock:
            triggered, self._pending = self._pending, None
            self._busy = triggered is not None
        return triggered

    # --- the item cycle -----------------------------------------------------------------

    def handle_item(self, triggered: float) -> ItemEvent:
        """One item, start to end. Never raises for a bad frame, camera or servo: the event says why."""
        cfg = self.config
        wall = datetime.fromtimestamp(time.time() - (time.monotonic() - triggered), UTC)
        self.observers.notify("item_started")
        settle_start = time.monotonic()
        with self._lit():
            if cfg.lid.settle_s > 0:
                time.sleep(cfg.lid.settle_s)
            settled = time.monotonic()
            frames, capture_error = self._capture(cfg.classifier.frames)
        captured = time.monotonic()
        errors = [capture_error] if capture_error else []
        look = self.chamber.look(frames[-1]) if frames else None  # capture check, empty?
        checked = time.monotonic()
        prediction = self._classify(frames, look, errors)
        classified = time.monotonic()
        decision = self._decide(prediction, look)
        commanded = time.monotonic()
        if decision.compartment is not None:
            self._detach_due = None  # home() detaches at the end of the move
            try:
                self.sorter.move(decision.compartment)
                self.sorter.hold()
                self.sorter.home()
            except Exception as exc:  # the hardware boundary: record, home, carry on
                errors.append(f"servo: {exc}")
                self._home_after_fault()
            if self.fill is not None:
                self.fill.item_added(decision.compartment)  # read its level again, now the servos rest

        image_path = None
        if self.photos is not None and frames:
            image_path, error = self.photos.save(frames[-1], wall, prediction.label if prediction else None)
            if error:
                errors.append(f"image: {error}")

        shown = getattr(self.camera, "last_path", None)  # the folder camera's photo
        event = ItemEvent(
            ts=wall.isoformat(timespec="milliseconds"),
            label=prediction.label if prediction else None,
            confidence=round(prediction.confidence, 6) if prediction else None,
            scores={k: round(v, 6) for k, v in prediction.scores.items()} if prediction else {},
            compartment=decision.compartment,
            reason=decision.reason,
            model_version=self.model_version,
            frames=len(frames),
            capture_ms=_ms(captured - settled),
            inference_ms=_ms(classified - checked),
            latency_ms=_ms(commanded - triggered - (settled - settle_start)),
            image_path=image_path,
            source=printable_path(shown) if shown else None,
            error="; ".join(errors) or None,
            box=look.box if look is not None else None,
        )
        event.cycle_ms = _ms(time.monotonic() - triggered)
        self._record(event)
        self._schedule_refresh()  # an idle frame is one taken a while after the last item
        return event

    def _classify(self, frames: list[np.ndarray], look: Look | None, errors: list[str]) -> Prediction | None:
        """The model's vote over ``frames``, unless the chamber check found a fault or nothing;
        what went wrong is added to ``errors``."""
        if look is not None and look.fault:
            errors.append(f"capture: {FAULT_TEXT[look.fault]}")
        if not frames or (look is not None and (look.fault or look.empty)):
            return None
        cropped = self._crop(frames, look)
        self._last_input = cropped[-1]
        try:
            return self.classifier.classify_frames(cropped)
        except (ValueError, RuntimeError) as exc:
            errors.append(f"classify: {exc}")
            return None

    def _decide(self, prediction: Prediction | None, look: Look | None) -> Decision:
        thresholds = {label: t.value for label, t in self.thresholds().items()}
        return decide(
            prediction, self.config.sorting, thresholds, self.fill.full() if self.fill else None, look
        )

    def _crop(self, frames: list[np.ndarray], look: Look | None) -> list[np.ndarray]:
        """With ``classifier.crop = "item"``: each frame cut to the item's box plus a margin."""
        if self.config.classifier.crop != "item" or look is None or look.box is None:
            return frames
        rows, cols = crop_box(look.box, frames[-1].shape)
        return [frame[rows, cols] for frame in frames]

    @contextlib.contextmanager
    def _lit(self):
        """The chamber's light on for what the block captures ([light] pin), off again after."""
        if self.light is None:
            yield
            return
        self.light.on()
        try:
            yield
        finally:
            self.light.off()

    def _schedule_refresh(self) -> None:
        refresh_s = self.config.empty.refresh_s
        live = self.camera is not None and self.camera.live
        usable = self.chamber is not None and self.chamber.reference is not None
        self._refresh_due = time.monotonic() + refresh_s if refresh_s > 0 and live and usable else None

    def _refresh_reference(self) -> None:
        """An idle frame, lid closed, into the empty reference if it looks empty (between items only)."""
        self._schedule_refresh()
        if self.lid is None or not self.lid.closed:  # an open lid lets other light in, or a hand
            return
        with self._lit():
            if self.config.lid.settle_s > 0:
                time.sleep(self.config.lid.settle_s)
            try:
                frame = self.camera.capture()
            except Exception as exc:  # the next item's capture deals with a failing camera
                log.debug("no idle frame for the empty reference: %s", exc)
                return
        if self.chamber.refresh(frame):
            log.debug("empty reference refreshed (%d)", self.chamber.refreshed)
        elif self.chamber.warnings():
            self._status_due = self._status_due or time.monotonic()

    def _capture(self, count: int) -> tuple[list[np.ndarray], str | None]:
        """Up to ``count`` frames; a failed capture reopens the camera, up to ``camera.retries`` times."""
        frames: list[np.ndarray] = []
        failures: list[str] = []
        while len(frames) < count:
            try:
                frame = self.camera.capture()
                if not (
                    isinstance(frame, np.ndarray)
                    and frame.dtype == np.uint8
                    and frame.ndim == 3
                    and frame.shape[2] == 3
                    and frame.size
                ):
                    what = (
                        f"{frame.dtype} {frame.shape}"
                        if isinstance(frame, np.ndarray)
                        else type(frame).__name__
                    )
                    raise CameraError(f"bad frame ({what}); expected RGB uint8 HxWx3")
                frames.append(frame)
                continue
            except Exception as exc:  # any camera failure is a failed capture, never the end of the daemon
                failures.append(str(exc) or type(exc).__name__)
                log.warning(
                    "capture failed (%d/%d): %s", len(failures), self.config.camera.retries + 1, failures[-1]
                )
            if len(failures) > self.config.camera.retries:
                break
            try:
                self.camera.reopen()
            except Exception as exc:
                failures.append(f"reopen: {exc}")
        if not failures:
            return frames, None
        if len(frames) < count:
            return frames, f"camera: {len(frames)} of {count} frames ({failures[-1]})"
        return frames, f"camera: recovered after {len(failures)} failed capture(s) ({failures[-1]})"

    # --- the camera for the review page: asked through self.requests, served between items ------

    def _serve_requests(self) -> bool:
        """Answer what the page asked of the camera since the last time; whether anything was."""
        asked = self.requests.take()
        handlers = {"snapshot": self._snapshot, "calibrate": self._calibrate, "test": self._test_item}
        for kind, serial in asked.items():
            try:
                value, error = handlers[kind](), None
            except SmartbinError as exc:
                value, error = None, str(exc)
            except Exception as exc:  # a bug in one ask must not end the loop: the page hears of it
                log.exception("the page's %s failed", kind)
                value, error = None, f"{kind} failed: {exc or type(exc).__name__}"
            self.requests.answer(kind, serial, value, error)
        return bool(asked)

    def _snapshot(self) -> dict[str, Any]:
        """One frame of a live camera, the chamber's light on (what an item's first frame would see)."""
        if not self.camera.live:
            raise SmartbinError(
                f"the camera {self.camera.name} shows one photo per item: it has no live picture"
            )
        frames, error = self._capture_lit(1)
        if not frames:
            raise SmartbinError(error)
        return {"frame": frames[0], "taken": now_iso()}

    def _capture_lit(self, count: int) -> tuple[list[np.ndarray], str | None]:
        """As an item's frames are taken: the light on, ``[lid] settle_s``, then :meth:`_capture`."""
        with self._lit():
            if self.config.lid.settle_s > 0:
                time.sleep(self.config.lid.settle_s)
            return self._capture(count)

    def _calibrate(self) -> dict[str, Any]:
        """``smartbin calibrate`` from the page: frames of the closed, empty chamber into the empty
        reference, which the empty check uses from the next item on."""
        cfg = self.config
        if self.lid is None or not self.lid.closed:
            raise SmartbinError("close the lid first: an open lid lets other light in, or a hand")
        with self._lit():
            try:
                frames = take_frames(
                    self.camera.capture, CALIBRATION_FRAMES, live=self.camera.live, settle_s=cfg.lid.settle_s
                )
            except Exception as exc:  # the camera's own error, as one line
                raise SmartbinError(f"camera: {one_line(exc)}") from None
        try:
            save_reference(cfg.paths.state_dir, frames, cfg.camera, cfg.empty)
        except OSError as exc:
            raise SmartbinError(
                f"cannot store the empty reference in {cfg.paths.state_dir}: {os_error_reason(exc)}"
            ) from None
        self.chamber = Chamber(cfg.paths.state_dir, cfg.empty, cfg.camera)
        self._schedule_refresh()
        log.info("empty reference stored from the review page (%d frames)", len(frames))
        self.observers.notify("status_changed", self._write_status())
        return self.chamber.status()

    def _test_item(self) -> dict[str, Any]:
        """What the bin would do with the item in the chamber now: capture, empty check, classify,
        decide; no servo moves and nothing is recorded."""
        frames, capture_error = self._capture_lit(self.config.classifier.frames)
        errors = [capture_error] if capture_error else []
        look = self.chamber.look(frames[-1]) if frames else None
        prediction = self._classify(frames, look, errors)
        decision = self._decide(prediction, look)
        return {
            "taken": now_iso(),
            "frame": frames[-1] if frames else None,
            "label": prediction.label if prediction else None,
            "confidence": round(prediction.confidence, 6) if prediction else None,
            "compartment": decision.compartment,
            "reason": decision.reason,
            "box": look.box if look is not None else None,
            "error": "; ".join(errors) or None,
        }

    def _home_after_fault(self) -> None:
        try:
            self.sorter.home()
        except Exception as exc:
            log.error("could not home the servos after a fault: %s", exc)

    def _record(self, event: ItemEvent) -> None:
        self.records.record(event)  # never raises: a full disk or a corrupt file must not stop the sorting
        self.items += 1
        self.last_item = {
            k: getattr(event, k)
            for k in ("id", "ts", "label", "confidence", "compartment", "reason", "latency_ms", "error")
        }
        now = time.monotonic()
        if now - self._status_written >= self.status_interval_s:
            self._write_status()
        else:
            self._status_due = self._status_written + self.status_interval_s
        self.notifier.status(self._status_line())
        log.info(
            "item %d: %s %.2f -> %s (%s) %.1f ms%s",
            self.items,
            event.label,
            event.confidence or 0.0,
            event.compartment or "no move",
            event.reason,
            event.latency_ms,
            f" [{event.error}]" if event.error else "",
        )
        with self._lock:  # the item is done: a closing from here on is the next item, not a bounce
            self._busy = False
        self.observers.notify("item", event, self.status())
        if self.on_item is not None:
            self.on_item(event)

    # --- the model ----------------------------------------------------------------------

    def _load_model(self, config: Config | None = None) -> tuple[Path, Classifier]:
        config = config or self.config
        path = resolve_model_path(config).resolve()
        return path, load_classifier(path, config)

    def reload(self) -> bool:
        """Read the config file again and load the model it points at, between items.

        ``[sorting]`` and ``[classifier]`` apply at once; other changed sections wait for a
        restart and are named. An invalid file or a refused model changes nothing."""
        self.notifier.reloading()
        old = self.model_version
        error, waiting = None, []
        try:
            config, waiting = config_reload.reread(self.config)
            path, classifier = self._load_model(config)
        except Exception as exc:  # whatever is wrong with the new config or model, the bin keeps sorting
            log.error("reload failed, keeping the running config and model %s: %s", old, exc)
            error = str(exc) or type(exc).__name__
        else:
            self.config = config
            if self.sorter is not None:  # it reads travel and hold times from its config at each move
                self.sorter.config = config
            self.model_path, self.classifier = path, classifier
            if self.updates is not None:
                self.updates.set_installed(self.model_version)
            log.info("reloaded: model %s from %s (was %s)", self.model_version, path, old)
            if waiting:
                log.warning("changes to [%s] take effect at the next restart", "], [".join(waiting))
        self.last_reload = config_reload.outcome(self.model_version, error, waiting)
        status = self._write_status()
        self.notifier.ready(self._status_line())
        self.observers.notify("status_changed", status)
        return error is None

    # --- updates: checked and fetched on the updater's thread, installed here between items ---

    def _serve_update(self) -> bool:
        """Install a fetched bundle, or pass on the updates' new state; whether anything was done."""
        if self.updates is None:
            return False
        installed = self.updates.install_fetched(self.config, self.model_version, self._health_frames)
        if installed is not None:
            self.model_path, self.classifier = installed.path, installed.classifier
        elif not self.updates.changed():
            return False
        status = self._write_status()
        self.notifier.status(self._status_line())
        self.observers.notify("status_changed", status)
        return True

    def _health_frames(self) -> list[np.ndarray]:
        """Real frames of this bin for a new model's health check: the last frame a model saw, the
        empty reference, else a fresh frame of a live camera (none: the probe frames alone)."""
        frames = [self._last_input] if self._last_input is not None else []
        if self.chamber.reference is not None:
            with contextlib.suppress(SmartbinError):  # the chamber already warns of a bad reference
                found = load_reference(self.config.paths.state_dir)
                if found is not None:
                    frames.append(found[0])
        if not frames and self.camera.live:
            taken, _ = self._capture_lit(1)
            frames += taken
        return frames

    @property
    def model_version(self) -> str | None:
        return self.classifier.bundle.version if self.classifier else None

    def thresholds(self) -> dict[str, Threshold]:
        """The confidence each label of the running model needs, and where it comes from."""
        if self.classifier is None:
            return {}
        bundle = self.classifier.bundle
        return thresholds_in_force(bundle.labels, bundle.manifest, self.config.sorting)

    # --- status -------------------------------------------------------------------------

    def _status_line(self) -> str:
        """systemd's STATUS=: the model, the item count, and whatever is wrong."""
        return "; ".join([f"model {self.model_version}, {self.items} items", *self.warnings()])

    def warnings(self) -> list[str]:
        """What is wrong with the bin's state, one line each (status.json, STATUS=, ``smartbin status``)."""
        out = [self.state_dir_error] if self.state_dir_error else []
        out += self.records.warnings()
        if self.fill is not None:
            out += self.fill.warnings()
        if self.chamber is not None:
            out += self.chamber.warnings()
        if self.photos is not None:
            out += self.photos.warnings()
        return (
            out + config_reload.warnings(self.last_reload) + (self.updates.warnings() if self.updates else [])
        )

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "state": self.state,
            "started": self.started,
            "updated": now_iso(),
            "model_version": self.model_version,
            "model_path": str(self.model_path) if self.model_path else None,
            "thresholds": as_status(self.thresholds()),
            "items": self.items,
            "ignored_closings": self.ignored_closings,
            "last_item": self.last_item,
            "config": str(self.config.source) if self.config.source else None,
            "last_reload": self.last_reload,
            "event_log": self.records.status(),
            "images": self.photos.status() if self.photos is not None else None,
            **({"fill": self.fill.status()} if self.fill is not None else {}),
            "empty_reference": self.chamber.status() if self.chamber is not None else None,
            "update": self.updates.status() if self.updates else None,
            "warnings": self.warnings(),
            "observers": self.observers.status(),
        }

    def _write_status(self) -> dict[str, Any]:
        """Write status.json; the status written, for observers to hear the same snapshot (the
        updater's thread may change its part between two calls of :meth:`status`)."""
        self._status_written = time.monotonic()
        self._status_due = None
        status = self.status()
        self._observers_written = status["observers"]
        try:
            write_status(self.config.paths.state_dir, status)
        except OSError as exc:  # a full or read-only disk must not stop the sorting
            error = os_error_reason(exc)
            if error != self._status_error:  # once, not after every item
                log.error("cannot write %s/status.json: %s", self.config.paths.state_dir, error)
            self._status_error = error
        else:
            if self._status_error is not None:
                log.info("status.json is written again")
            self._status_error = None
        return status
