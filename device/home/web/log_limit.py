"""A flood of one log line becomes one line per interval that says how many it stands for.

waitress warns "Task queue depth is N" for every request that waits for a thread: 500 clients at
once wrote 8,456 such lines in 10 s, burying everything else in the journal.
"""

from __future__ import annotations

import logging
import threading
import time

QUEUE_LOGGER = "waitress.queue"
INTERVAL_S = 30.0


class OncePerInterval(logging.Filter):
    """Lets one record through per ``interval_s``; the next one says how many were held back."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval_s:
                self._held += 1
                return False
            if self._held:
                record.msg = (
                    f"{record.msg} ({self._held} more such lines in the last {now - self._last:.0f} s)"
                )
            self._last, self._held = now, 0
        return True


def limit_queue_warnings() -> None:
    """Rate-limit waitress's queue-depth warnings (once per process)."""
    limit_warnings(QUEUE_LOGGER)


def limit_warnings(name: str) -> None:
    """Rate-limit the records of logger ``name`` (once per process)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, OncePerInterval) for f in logger.filters):
        logger.addFilter(OncePerInterval())
