"""The bin's daemon: wait for the lid, then handle one item at a time.

The path of one item is :meth:`Daemon.handle_item`::

    lid closed -> settle -> capture N frames -> classify (vote) -> decide -> move -> hold -> home -> record

Threads: gpiozero calls :meth:`Daemon._on_lid_closed` from its own thread (or, with mock pins,
from whoever drives the pin); signal handlers run on the main thread. Both only set flags and
write one byte to a wake-up socket; everything else happens on the thread running
:meth:`Daemon.serve`.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero import GPIOZeroError

from .cameras import Camera, create_camera
from .classifier import Classifier, Prediction
from .config import Config
from .decision import decide
from .errors import CameraError, SmartbinError
from .events import EventLog, ImageStore, ItemEvent
from .lid import LidSensor
from .model import load_classifier, resolve_model_path
from .notify import Notifier
from .pins import make_pin_factory
from .sorter import Sorter
from .state import now_iso, write_status

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
    ``on_item`` is called with each recorded :class:`ItemEvent`.
    """

    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Any = None,
        camera: Camera | None = None,
        notifier: Notifier | None = None,
        on_item: Callable[[ItemEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.on_item = on_item
        self._own_factory = pin_factory is None
        self.pin_factory = pin_factory
        self.camera = camera
        self.classifier: Classifier | None = None
        self.model_path: Path | None = None
        self.events: EventLog | None = None
        self.images: ImageStore | None = None
        self.sorter: Sorter | None = None
        self.lid: LidSensor | None = None
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
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Load the model, open the event log, home the servos, arm the lid, open the camera."""
        cfg = self.config
        self.model_path, self.classifier = self._load_model()
        log.info("model %s from %s (%s)", self.model_version, self.model_path, self.classifier.runtime)
        self.events = EventLog(cfg.paths.events_db)
        if cfg.images.save:
            self.images = ImageStore(
                cfg.paths.images_dir, max_count=cfg.images.max_count, max_mb=cfg.images.max_mb
            )
        if self.pin_factory is None:
            self.pin_factory = make_pin_factory(cfg.gpio.pin_factory)
        try:
            self.sorter = Sorter(cfg, pin_factory=self.pin_factory)
            self._detach_due = self.sorter.start_homing()  # READY does not wait for the servos to arrive
            self.lid = LidSensor(cfg.lid, pin_factory=self.pin_factory, on_close=self._on_lid_closed)
        except (GPIOZeroError, OSError) as exc:
            raise SmartbinError(
                f"cannot set up the GPIO pins (lid {cfg.lid.pin}, servos "
                f"{', '.join(str(s.pin) for s in cfg.servos)}) with pin factory {cfg.gpio.pin_factory!r}: "
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
        self.state = "ready"
        self._write_status()
        self.notifier.ready(self._status_line())
        log.info("ready: %s, camera %s, lid on GPIO %d", self._status_line(), self.camera.name, cfg.lid.pin)

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
                if self._run_timers():
                    continue
                wait = timeout
                for due in (self._status_due, self._detach_due):
                    if due is not None:
                        wait = min(wait, due - time.monotonic())
                select.select([self._wake_r], [], [], max(wait, 0.0))
                self._drain_wake()
        finally:
            self.shutdown()

    def _run_timers(self) -> bool:
        """Do what was deferred and is now due (status write, detach after start-up homing)."""
        now = time.monotonic()
        ran = False
        if self._detach_due is not None and now >= self._detach_due:
            self._detach_due = None
            self.sorter.detach()
            ran = True
        if self._status_due is not None and now >= self._status_due:
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
        self.notifier.stopping()
        if self.lid is not None:
            self.lid.close()
        if self.sorter is not None:
            try:
                self.sorter.home()
            except Exception as exc:  # the hardware boundary: report, keep closing the rest
                log.error("could not home the servos on shutdown: %s", exc)
            self.sorter.close()
        if self.camera is not None:
            self.camera.close()
        if self.events is not None:
            self.events.close()
        if self.pin_factory is not None and self._own_factory:
            self.pin_factory.close()
        self.state = "stopped"
        if self.classifier is not None:
            self._write_status()
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
        settle_start = time.monotonic()
        if cfg.lid.settle_s > 0:
            time.sleep(cfg.lid.settle_s)
        settled = time.monotonic()

        frames, capture_error = self._capture(cfg.classifier.frames)
        captured = time.monotonic()
        prediction: Prediction | None = None
        errors = [capture_error] if capture_error else []
        if frames:
            try:
                prediction = self.classifier.classify_frames(frames)
            except (ValueError, RuntimeError) as exc:
                errors.append(f"classify: {exc}")
        classified = time.monotonic()
        decision = decide(prediction, cfg.sorting)
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

        image_path = None
        if self.images is not None and frames:
            try:
                stamp = wall.strftime("%Y%m%dT%H%M%S%fZ")
                image_path = str(
                    self.images.save(frames[-1], f"{stamp}-{prediction.label if prediction else 'none'}")
                )
            except (OSError, ValueError) as exc:
                errors.append(f"image: {exc}")

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
            inference_ms=_ms(classified - captured),
            latency_ms=_ms(commanded - triggered - (settled - settle_start)),
            image_path=image_path,
            source=str(getattr(self.camera, "last_path", None) or "") or None,
            error="; ".join(errors) or None,
        )
        event.cycle_ms = _ms(time.monotonic() - triggered)
        self._record(event)
        return event

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

    def _home_after_fault(self) -> None:
        try:
            self.sorter.home()
        except Exception as exc:
            log.error("could not home the servos after a fault: %s", exc)

    def _record(self, event: ItemEvent) -> None:
        try:
            self.events.record(event)
        except Exception as exc:  # a full disk must not stop the sorting
            log.error("cannot record event: %s", exc)
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
        if self.on_item is not None:
            self.on_item(event)

    # --- the model ----------------------------------------------------------------------

    def _load_model(self) -> tuple[Path, Classifier]:
        path = resolve_model_path(self.config).resolve()
        return path, load_classifier(path, self.config)

    def reload(self) -> bool:
        """Load the model the config now points at; on failure keep the running one."""
        self.notifier.reloading()
        old = self.model_version
        try:
            path, classifier = self._load_model()
        except Exception as exc:  # whatever is wrong with the new model, the bin keeps sorting
            log.error("reload failed, keeping model %s: %s", old, exc)
            ok = False
        else:
            self.model_path, self.classifier = path, classifier
            log.info("reloaded: model %s from %s (was %s)", self.model_version, path, old)
            ok = True
        self._write_status()
        self.notifier.ready(self._status_line())
        return ok

    @property
    def model_version(self) -> str | None:
        return self.classifier.bundle.version if self.classifier else None

    # --- status -------------------------------------------------------------------------

    def _status_line(self) -> str:
        return f"model {self.model_version}, {self.items} items"

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "state": self.state,
            "started": self.started,
            "updated": now_iso(),
            "model_version": self.model_version,
            "model_path": str(self.model_path) if self.model_path else None,
            "items": self.items,
            "ignored_closings": self.ignored_closings,
            "last_item": self.last_item,
            "config": str(self.config.source) if self.config.source else None,
        }

    def _write_status(self) -> None:
        self._status_written = time.monotonic()
        self._status_due = None
        try:
            write_status(self.config.paths.state_dir, self.status())
        except OSError as exc:  # a full or read-only disk must not stop the sorting
            log.error("cannot write status: %s", exc)
