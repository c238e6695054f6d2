"""What one client can hold of the review page's server, and the server's place behind the bin.

waitress serves at most ``connection_limit`` (100) connections at once and closes one only after
``channel_timeout`` (120 s) without a byte, checked every ``cleanup_interval`` (30 s). 100 clients
sending one byte a second, or 120 that opened a connection and said nothing, held every slot for
as long as they liked: the page, the API, ``/metrics`` and ``/healthz`` waited in the backlog.
waitress has no per-client limit and no deadline for a request to arrive, so :class:`LimitedServer`
adds both, checked where waitress checks its own limits (when it accepts, and in its maintenance
pass); when it is full, the connection that has waited longest for its request makes room for the
next, so that clients from many addresses cannot shut out a new one either. It also runs the
server's threads at a lower priority than the bin's (:func:`lower_priority`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .log_limit import limit_warnings

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1  # waitress's maintenance pass (idle connections, request deadlines)
MAX_HEADER_BYTES = 16 * 1024  # waitress: 256 KiB
MAX_BODY_BYTES = 64 * 1024  # waitress: 1 GiB; the largest the app reads is a label request (1 KiB)
NICENESS = 10  # added to the niceness of the web's threads (Linux): the item cycle comes first


@dataclass(frozen=True)
class Limits:
    """Per-connection limits; the defaults are the bin's (tests shorten the times)."""

    per_client: int = 10  # connections at once from one address; a browser opens at most 6 to a host
    request_deadline_s: float = 5.0  # from the first byte of a request to its last (headers and body)
    idle_timeout_s: int = 10  # a connection without a request under way: kept alive, or opened and silent


BIN_LIMITS = Limits()


class LimitedChannel(HTTPChannel):
    """waitress's channel, noting when the request it is receiving began."""

    request_started = 0.0  # time.time() of the first byte of the request being received

    def __init__(
        self, server: LimitedServer, sock: Any, addr: Any, adj: Adjustments, map: Any = None
    ) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        peer = addr[0]
        open_ = sum(1 for channel in server.active_channels.values() if channel.addr[0] == peer)
        if open_ > server.limits.per_client:
            log.warning(
                "web: closing a new connection from %s, which has %d open (at most %d from one address)",
                peer,
                open_ - 1,
                server.limits.per_client,
            )
            self.handle_close()

    def received(self, data: bytes) -> bool:
        if self.request is None:
            self.request_started = time.time()
        return super().received(data)

    def waiting_since(self) -> float | None:
        """Since when it waits for a request (to begin, or to be whole); None: one is served."""
        if self.requests or self.total_outbufs_len or self.will_close:
            return None
        return self.request_started if self.request is not None else self.last_activity


class LimitedServer(TcpWSGIServer):
    """waitress's TCP server with :class:`Limits`, its request threads and loop at a lower priority."""

    channel_class = LimitedChannel

    def __init__(
        self, app: Any, host: str, port: int, *, threads: int, limits: Limits, **adjustments: Any
    ) -> None:
        adj = Adjustments(
            host=host,
            port=port,
            threads=threads,
            channel_timeout=limits.idle_timeout_s,
            cleanup_interval=CHECK_INTERVAL_S,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            **adjustments,
        )
        self.limits = limits
        limit_warnings(__name__)
        # the first address HOST stands for (an IP address, as web.listen is, stands for one)
        super().__init__(app, dispatcher=LowPriorityDispatcher(), adj=adj, sockinfo=adj.listen[0])
        self.task_dispatcher.set_thread_count(threads)  # once listening: no threads left behind

    def readable(self) -> bool:
        """waitress stops accepting at ``connection_limit``: keep the last place for a new client."""
        if self.accepting and len(self._map) >= self.adj.connection_limit - 1:
            self._make_room()
        return super().readable()

    def _make_room(self) -> None:
        """Close the connection that has waited longest for its request (unless one is closing)."""
        channels = self.active_channels.values()
        if any(channel.will_close for channel in channels):
            return
        waiting = [(since, channel) for channel in channels if (since := channel.waiting_since()) is not None]
        if waiting:
            since, oldest = min(waiting, key=lambda pair: pair[0])
            log.warning(
                "web: %d connections open; closing the one from %s that waited %.0f s for its request",
                len(channels),
                oldest.addr[0],
                time.time() - since,
            )
            oldest.will_close = True

    def maintenance(self, now: float) -> None:
        """waitress closes idle connections; this also closes those whose request is late."""
        super().maintenance(now)
        late = now - self.limits.request_deadline_s
        for channel in self.active_channels.values():
            if channel.request is not None and not channel.requests and channel.request_started < late:
                log.warning(
                    "web: closing a connection from %s: its request took more than %g s to arrive",
                    channel.addr[0],
                    self.limits.request_deadline_s,
                )
                channel.will_close = True

    def run(self) -> None:
        lower_priority()
        super().run()


class LowPriorityDispatcher(ThreadedTaskDispatcher):
    """waitress's request threads, each at a lower priority."""

    def handler_thread(self, thread_no: int) -> None:
        lower_priority()
        super().handler_thread(thread_no)


def lower_priority() -> None:
    """Make the calling thread :data:`NICENESS` steps nicer, so that the bin's threads come first.

    On Linux niceness belongs to a thread (``setpriority`` with its thread id); the systemd unit's
    system call filter lets that call through. Elsewhere, or where it is refused, nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + NICENESS))
    except OSError:
        pass
