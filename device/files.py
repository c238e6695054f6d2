"""Publishing a directory so that readers see the old one or the new one, never half of either,
checking an output folder before the work that fills it, file names as text, and where the files
shipped with smartbin are."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from . import interrupts
from .errors import SmartbinError, os_error_reason

#: What ships inside the package: the example config, the default model, the sample photos.
DATA_DIR = Path(__file__).resolve().parent / "data"


def publish_dir(staging: Path, out: Path) -> None:
    """Move a fully written ``staging`` directory to ``out``, replacing what was there.

    Both must be on one file system. An existing ``out`` is renamed aside first and removed only
    once the new one is in place, so a crash in between leaves ``.<name>.old`` rather than nothing.
    A Ctrl-C or SIGTERM noted while the work ran (and perhaps swallowed) is raised here instead.
    """
    interrupts.raise_if_noted()
    staging.chmod(0o755)
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)


def check_out_dir(path: str | Path, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be created.

    ``path`` may be an existing folder or a path whose first existing parent is a writable
    folder. One line naming the reason, and ``option`` (such as ``--out``) to change.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise SmartbinError(f"{path}: not a directory (it is a file); choose another {option}")
        return
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SmartbinError(f"{path}: not a directory ({parent} is a file); choose another {option}")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise SmartbinError(
            f"{path}: permission denied (cannot create folders in {parent}); choose another {option}"
        )


def check_outside(out: str | Path, inputs: Iterable[str | Path], option: str) -> None:
    """Refuse an output folder that is, or lies inside, a folder the command reads: its files would
    be read back as input (a run's reports as a class of photos)."""
    target = Path(out).expanduser().resolve()
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if target.is_relative_to(source):
            raise SmartbinError(
                f"{option} {out} is inside {given}, which this command reads; choose a folder outside it"
            )


def is_special_file(path: Path) -> bool:
    """A pipe, socket or device: reading one may wait for a writer forever, or never end.

    A folder is none (opening it says "is a directory"). Raises :class:`OSError` as ``stat`` does.
    """
    mode = path.stat().st_mode
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def dir_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be listed as a folder ("no such folder", "not a directory",
    "permission denied", ...), or None when it can."""
    try:
        with os.scandir(path):
            return None
    except FileNotFoundError:
        return "no such folder"
    except OSError as exc:
        return os_error_reason(exc)


def printable_path(path: str | Path) -> str:
    """``path`` as text that any UTF-8 writer takes (SQLite, JSON, MQTT, a terminal).

    A file name that is not UTF-8 reaches Python with surrogate escapes, which no UTF-8 encoder
    accepts; its odd bytes are shown as ``\\xe9`` instead.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")
