"""The versions a bin will not try again, kept across restarts.

``<state_dir>/updates/not-retried.json`` maps a version to why it is not tried again::

    {"v2": {"outcome": "refused", "reason": "signature ...", "at": "2026-..."}}

``refused``: what the repository served failed verification; ``failed``: the bundle was verified
but does not work on this bin (the model store refused it, or it failed its health check and was
rolled back). Either way the same version is never fetched or installed again; a new version is.
A file that cannot be read or written is logged and the bin goes on with what it has in memory
(a restart may then try a version once more, never in a loop while it runs).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..records.state import now_iso

log = logging.getLogger(__name__)

REFUSED, FAILED = "refused", "failed"
NAME = "not-retried.json"
KEEP = 50  # the newest entries kept: a repository offers one version at a time


class NotRetried:
    def __init__(self, directory: Path) -> None:
        self.path = directory / NAME
        self._entries: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("updates: cannot read %s (%s); starting with no version remembered", self.path, exc)
            return
        if isinstance(data, dict):
            self._entries = {
                str(version): entry
                for version, entry in data.items()
                if isinstance(entry, dict) and entry.get("outcome") in (REFUSED, FAILED)
            }

    def get(self, version: str) -> dict[str, Any] | None:
        """``{"outcome", "reason", "at"}`` for a version not to try again, else None."""
        return self._entries.get(version)

    def remember(self, version: str, outcome: str, reason: str) -> None:
        self._entries.pop(version, None)
        self._entries[version] = {"outcome": outcome, "reason": reason, "at": now_iso()}
        while len(self._entries) > KEEP:
            del self._entries[next(iter(self._entries))]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write(self.path, json.dumps(self._entries, indent=1) + "\n")
        except OSError as exc:
            log.error(
                "updates: cannot write %s (%s); a restart may try %s once more", self.path, exc, version
            )


def _write(path: Path, text: str) -> None:
    """A new file renamed over the old one, flushed first (bins lose power)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
