"""status.json: what the daemon is doing, written atomically for ``smartbin status`` and deploy."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUS_NAME = "status.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_status(state_dir: Path, status: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATUS_NAME
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(status, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the smartbin service user)
        return True
    return True
