"""The web server as one of the daemon's observers (see :mod:`smartbin.device.home.observers`).

Threads: the daemon's hooks only put what happened into an inbox (one ``SimpleQueue.put``, no
lock); a worker thread takes it, keeps the :class:`~.tally.Tally` and publishes the daemon's
status and the tally's snapshot as one tuple, which the server's threads read (a reference,
never changed after it is published). waitress serves the app on a thread of its own with a
small pool of request threads; each request opens its own SQLite connection. Nothing the
server does can hold up an item: the cycle never waits for, or shares a lock with, any of them,
and they all run at a lower priority than the bin's threads (:mod:`.limits`, which also bounds
what one client can hold of the server).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from waitress import wasyncore

from ...config import Config
from ...errors import os_error_reason
from ..camera_requests import CameraRequests
from ..observers import QueuedObserver
from . import queries
from .app import make_app
from .limits import BIN_LIMITS, LimitedServer, Limits, lower_priority
from .log_limit import limit_queue_warnings
from .tally import Tally

log = logging.getLogger(__name__)

SERVER_THREADS = 4  # request threads: a page loads its thumbnails a few at a time
STOP_TIMEOUT_S = 1.0


class WebObserver(QueuedObserver):
    """Serves the review page, the JSON API and ``/metrics`` on ``[web] listen``."""

    name = "web"

    def __init__(self, config: Config, limits: Limits = BIN_LIMITS, token_files: Sequence[Path] = ()) -> None:
        super().__init__()
        self.config = config
        self.limits = limits
        self.token_files = token_files  # () : the config's; see make_app
        self.address = config.web.address
        self.url: str | None = None  # once listening
        self.error: str | None = None  # why it does not serve
        self._tally = Tally(list(config.compartments))
        self._view: tuple[dict[str, Any], dict[str, Any]] = ({"state": "starting"}, self._tally.snapshot())
        self._worker = threading.Thread(target=self._run, name="smartbin-web-tally", daemon=True)
        self._server: Any = None
        self._serving: threading.Thread | None = None
        self._requests: CameraRequests | None = None  # the daemon's camera, once attached

    def attach(self, requests: CameraRequests) -> None:
        self._requests = requests

    # --- observer hooks: the daemon's thread; one put each -------------------------------

    def started(self, status: Mapping[str, Any]) -> None:
        super().started(status)
        self._worker.start()
        self._listen()

    def stopping(self) -> None:
        if self._server is not None:
            # closed from the server's own loop, which then ends at once; every socket closes,
            # a browser's kept-alive connections too
            server = self._server
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._serving.join(STOP_TIMEOUT_S)
            server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT_S)
        if self._worker.is_alive():
            self.inbox.put(("stop",))
            self._worker.join(STOP_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        return {"listen": self.config.web.listen, "url": self.url, "error": self.error}

    # --- reading: the server's threads ----------------------------------------------------

    def view(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the daemon's status with ``busy``, the tally's snapshot)."""
        return self._view

    # --- the server -------------------------------------------------------------------------

    def _listen(self) -> None:
        host, port = self.address
        limit_queue_warnings()
        app = make_app(
            self.config,
            self.view,
            lambda review: self.inbox.put(("review", review)),
            self.token_files,
            self._requests,
        )
        try:
            self._server = LimitedServer(
                app,
                host,
                port,
                threads=SERVER_THREADS,
                limits=self.limits,
                ident="smartbin",
                clear_untrusted_proxy_headers=True,
            )
        except (OSError, ValueError) as exc:  # the address in use or not this machine's: sort on without it
            why = os_error_reason(exc) if isinstance(exc, OSError) else str(exc)
            self.error = f"cannot listen on {self.config.web.listen}: {why}"
            log.error("NO REVIEW PAGE (the bin keeps sorting): %s; fix web.listen", self.error)
            return
        bound_host, bound_port = self._server.socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        self._serving = threading.Thread(target=self._server.run, name="smartbin-web", daemon=True)
        self._serving.start()
        log.info("review page at %s", self.url)

    # --- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        lower_priority()
        self._count_the_log()
        status: Mapping[str, Any] = {}
        busy = False
        while True:
            message = self.inbox.get()
            try:
                kind = message[0]
                if kind == "stop":
                    return
                if kind == "status":
                    status = message[1]
                elif kind == "busy":
                    busy = True
                elif kind == "item":
                    busy = False
                    self._tally.add(message[1])
                    status = message[2]
                elif kind == "review":
                    self._tally.reviews += 1
                self._publish(status, busy)
            except Exception:  # a bug here must not end the page's updates: log, go on
                log.exception("web: cannot take %s", message[0])

    def _count_the_log(self) -> None:
        """The event log's counts per compartment, all and today, before this daemon's items."""
        try:
            db = queries.connect(self.config.paths.events_db)
        except (OSError, sqlite3.Error):
            return  # no log (yet): counting starts at zero
        try:
            last = queries.last_event_id(db)
            midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
            self._tally.start_from(
                queries.counts_by_compartment(db, up_to=last),
                queries.counts_by_compartment(db, up_to=last, since=midnight),
                last,
            )
        except sqlite3.Error as exc:
            log.warning("web: cannot count the event log's items (%s); counting from zero", exc)
        finally:
            db.close()

    def _publish(self, status: Mapping[str, Any], busy: bool) -> None:
        self._view = ({**status, "busy": busy}, self._tally.snapshot())
