"""The daemon's side of its own updates: the updater ``[updates]`` asks for, the install of what it
fetched (on the daemon's thread, between items), and what status and warnings say of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import Config
from ..hardware.cameras.base import one_line
from .install import Installed, InstallFailed, install
from .memory import FAILED, REFUSED
from .source import UpdateSource
from .updater import Updater

log = logging.getLogger(__name__)


class BinUpdates:
    """``updater`` is None when the config asks for no updates, or when they cannot be checked
    (``error`` says why; the bin sorts on)."""

    def __init__(self, config: Config, source: UpdateSource | None, wake: Callable[[], None]) -> None:
        self.url = config.updates.url
        self.updater: Updater | None = None
        self.error: str | None = None
        self._seen: dict[str, Any] | None = None  # the status last reported
        if source is None and not config.updates.url:
            return
        if source is None:
            try:  # python-tuf only on a bin that fetches its own updates
                from .tuf_source import TufSource

                # its files go in <state_dir>/updates/, beside the updater's
                source = TufSource(config.updates, config.mqtt.bin_id, config.paths.state_dir)
            except Exception as exc:  # a missing library or root.json: the bin sorts on, status says why
                self.error = f"updates: cannot check {config.updates.url}: {one_line(exc)}"
                log.error("%s", self.error)
                return
        self.updater = Updater(config.updates, source, config.paths.state_dir / "updates", wake=wake)

    def start(self, model_version: str | None) -> None:
        if self.updater is not None:
            self.updater.start(model_version)
            self._seen = self.updater.status()

    def stop(self) -> None:
        if self.updater is not None:
            self.updater.stop()

    def set_installed(self, model_version: str | None) -> None:
        """The model the daemon runs now (after a reload)."""
        if self.updater is not None:
            self.updater.set_installed(model_version)

    def changed(self) -> bool:
        """Whether the status changed since it was last reported."""
        return self.updater is not None and self.updater.status() != self._seen

    def install_fetched(
        self, config: Config, running: str | None, health_frames: Callable[[], list[np.ndarray]]
    ) -> Installed | None:
        """Between items: install what the updater fetched, if anything; the new model, checked
        and live, else None (nothing fetched, or it failed and the running model stays)."""
        fetched = self.updater.take() if self.updater is not None else None
        if fetched is None:
            return None
        log.info("updates: installing %s (running %s)", fetched.offer.version, running)
        try:
            installed = install(fetched.path, config, health_frames())
        except InstallFailed as exc:
            self.updater.finish(fetched, error=str(exc), remember=exc.remember)
            self.updater.set_installed(running)
            return None
        self.updater.finish(fetched)
        self.updater.set_installed(installed.classifier.bundle.version)
        log.info(
            "updates: model %s from %s (was %s; health check on %d frame(s) of this bin)",
            installed.classifier.bundle.version,
            installed.path,
            running,
            installed.checked_on,
        )
        return installed

    def status(self) -> dict[str, Any] | None:
        if self.updater is not None:
            self._seen = self.updater.status()
            return self._seen
        if self.error:
            return {"state": FAILED, "reason": self.error, "url": self.url}
        return None

    def warnings(self) -> list[str]:
        if self.updater is None:
            return [self.error] if self.error else []
        status = self.updater.status()
        if status["state"] in (FAILED, REFUSED):
            return [f"update {status['state']}: {status['reason']}"]
        return []
