"""status.json: what the daemon is doing, written atomically for ``smartbin status`` and deploy."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import SmartbinError, os_error_reason

STATUS_NAME = "status.json"
_REWRITTEN = "the daemon rewrites it when it starts, reloads or handles an item"


# status.json is written at least this often, idle or not: `smartbin status` takes a file older
# than three heartbeats from a daemon that holds its lock for a sign that it hangs.
HEARTBEAT_S = 30.0


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
    """The daemon's status.json, or None when there is none; :class:`SmartbinError` when it is unusable."""
    path = state_dir / STATUS_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # no state there, or none possible: see state_dir_problem
        return None
    except OSError as exc:
        raise SmartbinError(f"cannot read {path}: {os_error_reason(exc)}") from None
    except UnicodeDecodeError:
        raise SmartbinError(f"{path} is not a status file (not UTF-8 text); {_REWRITTEN}") from None
    try:
        status = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"bad or truncated JSON at line {exc.lineno}"
        raise SmartbinError(f"{path} is not a status file ({what}); {_REWRITTEN}") from None
    if not isinstance(status, dict):
        raise SmartbinError(
            f"{path} is not a status file (a JSON {type(status).__name__}, not an object); {_REWRITTEN}"
        )
    pid, started = status.get("pid"), status.get("started")
    if type(pid) is not int or pid < 1 or not isinstance(started, str) or not _is_time(started):
        raise SmartbinError(f"{path} is not a status file (no pid or start time); {_REWRITTEN}")
    return status


def bad_status_field(state_dir: Path, exc: Exception) -> SmartbinError:
    """A status.json whose pid and start time are fine but another field is not what the daemon writes."""
    what = f"no field {exc}" if isinstance(exc, KeyError) else f"a field of the wrong kind: {exc}"
    return SmartbinError(f"{state_dir / STATUS_NAME} is not a status file ({what}); {_REWRITTEN}")


def _is_time(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:  # exists() is False below a regular file too
        path = path.parent
    return path


def state_dir_problem(state_dir: Path) -> str | None:
    """Why a daemon could not write in ``state_dir`` ('not a directory', 'read-only file system',
    'permission denied'), or None when it could (creating it if need be).

    "Permission denied" is judged for this user only when it owns the folder: another user
    (a deployer in the smartbin group) cannot tell whether the daemon's own user may write there.
    """
    probe = _nearest_existing(state_dir)
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        return f"{probe} is on a read-only file system"
    if probe.stat().st_uid != os.geteuid():
        return None
    return f"{probe}: permission denied"


def disk_free_bytes(state_dir: Path) -> int | None:
    """Bytes an unprivileged writer can still use on the file system holding ``state_dir``."""
    probe = _nearest_existing(state_dir)
    try:
        stat = os.statvfs(probe if probe.is_dir() else probe.parent)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) would signal groups, not test one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the smartbin service user)
        return True
    return True
