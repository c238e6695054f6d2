"""When the bin looks for an update, what it skips, and what it hands the daemon to install.

Two threads meet here. The updater's own thread does everything that waits on the network: at
each scheduled check (the first one :data:`FIRST_CHECK_S` after start, then every
``check_interval_s``, each wait jittered by ``jitter``), or at once when asked
(:meth:`Updater.check_now`: the MQTT command, Home Assistant's *Install*), it asks the
:class:`~.source.UpdateSource` what the channel offers and fetches the bundle. It then leaves the
verified bundle for the daemon and waits. The daemon's thread takes it between items
(:meth:`Updater.take`), installs it (:mod:`.install`) and says how that went
(:meth:`Updater.finish`). An item never waits for the network.

A version that the repository's verification refused, or that this bin's store or health check
failed, is written down (:mod:`.memory`) and never fetched or installed again, also after a
restart. A passing failure (no network, a server error, the model store busy with a deploy)
retries sooner than the next scheduled check: after :data:`RETRY_S`, doubling each time, never
later than the schedule.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..records.state import now_iso
from .memory import FAILED, REFUSED, NotRetried
from .settings import UpdatesConfig
from .source import Offer, UpdateError, UpdateSource

log = logging.getLogger(__name__)

IDLE, CHECKING, DOWNLOADING, INSTALLING, UP_TO_DATE = (
    "idle",
    "checking",
    "downloading",
    "installing",
    "up to date",
)
STATES = (IDLE, CHECKING, DOWNLOADING, INSTALLING, UP_TO_DATE, FAILED, REFUSED)
FIRST_CHECK_S = 60.0  # the first check this long after start (jittered): the network comes up first
RETRY_S = 60.0  # a passing failure retries after this, doubling each time, up to check_interval_s
STOP_TIMEOUT_S = 2.0


def jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    """``seconds`` x (1 +- ``jitter``), so that a fleet does not ask the server all at once."""
    return seconds * (1 + rng.uniform(-jitter, jitter))


@dataclass(frozen=True)
class Fetched:
    """A verified, unpacked bundle waiting for the daemon to install it between items."""

    offer: Offer
    path: Path


class Updater:
    """The update state machine (see the module docstring); ``wake`` wakes the daemon's loop."""

    def __init__(
        self,
        settings: UpdatesConfig,
        source: UpdateSource,
        directory: Path,
        *,
        wake: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.not_retried = NotRetried(directory)
        self.first_check_s = FIRST_CHECK_S
        self.retry_s = RETRY_S
        self._wake = wake
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._asked = threading.Event()  # check now (or stop)
        self._finished = threading.Event()  # the daemon is done with the fetched bundle
        self._stop = False
        self._fetched: Fetched | None = None
        self._thread: threading.Thread | None = None
        self._due = 0.0  # monotonic time of the next scheduled check
        self._failures = 0  # passing failures in a row
        # what status() reports
        self.state = IDLE
        self.reason: str | None = None
        self.installed_version: str | None = None
        self.latest_offered: str | None = None
        self.last_check_at: str | None = None
        self.next_check_at: str | None = None

    # --- any thread ---------------------------------------------------------------------

    def start(self, installed_version: str | None) -> None:
        """Schedule the first check and start the updater's thread."""
        self.installed_version = installed_version
        self._schedule(jittered(self.first_check_s, self.settings.jitter, self._rng))
        self._thread = threading.Thread(target=self._run, name="smartbin-updates", daemon=True)
        self._thread.start()

    def check_now(self) -> None:
        """Check at once (MQTT's ``cmd/update``); returns at once, the check runs on the updater's thread."""
        self._asked.set()

    def stop(self) -> None:
        """End the updater's thread; a download in flight is left to the source (it resumes next time)."""
        self._stop = True
        self._asked.set()
        self._finished.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    def set_installed(self, version: str | None) -> None:
        """The model the daemon runs now (at start, and after a reload or an install)."""
        with self._lock:
            self.installed_version = version

    def status(self) -> dict[str, Any]:
        """What status.json, the page and MQTT say about updates."""
        with self._lock:
            skipped = self.not_retried.get(self.latest_offered) if self.latest_offered else None
            return {
                "url": self.settings.url,
                "channel": self.settings.channel,
                "state": self.state,
                "reason": self.reason,
                "installed_version": self.installed_version,
                "latest_offered": self.latest_offered,
                "not_retried": {"version": self.latest_offered, **skipped} if skipped else None,
                "last_check_at": self.last_check_at,
                "next_check_at": self.next_check_at,
            }

    # --- the daemon's thread, between items ---------------------------------------------

    def take(self) -> Fetched | None:
        """A fetched bundle to install now, once; None when there is none."""
        with self._lock:
            fetched, self._fetched = self._fetched, None
        return fetched

    def finish(self, fetched: Fetched, *, error: str | None = None, remember: bool = True) -> None:
        """How the install went: ``error`` None, it is live; else why not, and whether the version
        is never to be tried again (``remember``: the store or the health check refused it) or
        the failure was passing (the store was busy)."""
        version = fetched.offer.version
        if error is None:
            self._done(UP_TO_DATE, None, installed_version=version)
            log.info("updates: %s is live", version)
        elif remember:
            self.not_retried.remember(version, FAILED, error)
            self._done(FAILED, f"{version}: {error}")
            log.error("updates: %s failed and is not tried again: %s", version, error)
        else:
            self._passing(f"{version}: {error}")
        self._finished.set()

    # --- the updater's thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            self._asked.wait(max(0.0, self._due - time.monotonic()))
            if self._stop:
                return
            self._asked.clear()
            try:
                self.check()
            except Exception as exc:  # a bug in a source must not end the updates for good
                log.exception("updates: the check failed")
                self._passing(f"the check failed: {exc or type(exc).__name__}")

    def check(self) -> None:
        """One check: ask, skip or fetch, hand over and wait for the install (the updater's thread)."""
        self._set(CHECKING, None, last_check_at=now_iso())
        offer = self._ask(self.source.offer)
        if offer is None or offer is False:
            return
        with self._lock:
            self.latest_offered = offer.version
            live = offer.version == self.installed_version
        skipped = self.not_retried.get(offer.version)
        if live:
            self._done(UP_TO_DATE, None)
            return
        if skipped is not None:
            self._done(
                skipped["outcome"],
                f"{offer.version} {skipped['outcome']} at {skipped['at']}, not tried again: {skipped['reason']}",
            )
            return
        self._set(DOWNLOADING, None)
        path = self._ask(lambda: self.source.fetch(offer), offer)
        if not path:
            return
        self._finished.clear()
        self._set(INSTALLING, None)
        with self._lock:
            self._fetched = Fetched(offer, path)
        self._wake()
        self._finished.wait()  # finish() sets the state and the next check

    def _ask(self, call: Callable[[], Any], offer: Offer | None = None) -> Any:
        """``call()``'s result; False after an :class:`UpdateError`, which sets the state and the next
        check (None from ``offer()``: the channel offers nothing, the bin is up to date)."""
        try:
            result = call()
        except UpdateError as exc:
            reason = str(exc) or type(exc).__name__
            if not exc.refused:
                self._passing(f"{offer.version}: {reason}" if offer else reason)
                return False
            if offer is not None:
                self.not_retried.remember(offer.version, REFUSED, reason)
            log.error(
                "updates: refused %s: %s", offer.version if offer else "the repository's metadata", reason
            )
            self._done(REFUSED, f"{offer.version}: {reason}" if offer else reason)
            return False
        if result is None:
            self._done(UP_TO_DATE, None, latest_offered=None)
        return result

    # --- state ----------------------------------------------------------------------------

    def _passing(self, reason: str) -> None:
        self._failures += 1
        wait = min(self.retry_s * 2 ** (self._failures - 1), self.settings.check_interval_s)
        log.warning("updates: %s; trying again in about %.0f s", reason, wait)
        self._set(FAILED, reason)
        self._schedule(jittered(wait, self.settings.jitter, self._rng))

    def _done(self, state: str, reason: str | None, **fields: Any) -> None:
        self._failures = 0
        self._set(state, reason, **fields)
        self._schedule(self._interval())

    def _interval(self) -> float:
        return jittered(self.settings.check_interval_s, self.settings.jitter, self._rng)

    def _schedule(self, wait: float) -> None:
        at = datetime.now(UTC) + timedelta(seconds=wait)
        with self._lock:
            self._due = time.monotonic() + wait
            self.next_check_at = at.isoformat(timespec="milliseconds")
        self._wake()

    def _set(self, state: str, reason: str | None, **fields: Any) -> None:
        with self._lock:
            self.state, self.reason = state, reason
            for name, value in fields.items():
                setattr(self, name, value)
        self._wake()
