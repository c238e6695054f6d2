"""``smartbin collect``: a bin's saved photos, by reviewed label where a person gave one, and its event log.

1. ``smartbin store export-events`` on the bin copies the event log with SQLite's backup API
   (consistent while the daemon writes) to its standard output -> ``OUT/events.db``.
2. The copy says which photo got which label, and which were reviewed (the ``reviews`` table of
   :mod:`smartbin.device.records.events`). Each photo belongs in one folder of ``OUT``:

   - ``<reviewed label>/``: reviewed as a class: ``OUT`` is a photo set ``smartbin train`` reads;
   - ``.not-a-class/<not_trash|empty>/``: reviewed as no item to sort;
   - ``.unreviewed/<predicted label>/`` (``_unlabelled`` without one): nobody has looked yet.

   Training and ``evaluate`` skip folders whose name starts with a dot, so only reviewed photos
   become training data.
3. A photo already in ``OUT`` but in another folder (reviewed since the last run) is moved there;
   one ``rsync --files-from`` per folder fetches the rest (photos the bin pruned meanwhile are
   skipped), so a second run copies nothing that is already here.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from smartbin.device.errors import SmartbinError
from smartbin.device.records.events import REVIEW_EXTRA_LABELS, reviewed_labels
from smartbin.device.vision.bundle import is_safe_name

from .deploy import RemoteSide, check_plain_path, remote_json
from .ssh import Connection, RemoteError, run_tool

UNREVIEWED = ".unreviewed"
NOT_A_CLASS = ".not-a-class"
UNLABELLED = "_unlabelled"


@dataclass
class Plan:
    """Where each of the bin's photos belongs in ``OUT``, and what is there already."""

    todo: dict[str, list[str]] = field(default_factory=dict)  # folder -> photos to fetch
    moves: list[tuple[Path, Path]] = field(default_factory=list)  # here, but in another folder
    here: int = 0
    odd: int = 0  # rows whose path is outside images_dir or odd
    photos: int = 0  # usable photo rows
    reviewed: Counter[str] = field(default_factory=Counter)  # reviewed photos per reviewed label


@dataclass(frozen=True)
class Collected:
    line: str  # what collect says about this bin
    reviewed: int  # photos reviewed (as a class, not_trash or empty)


def folder_for(predicted: str | None, reviewed: str | None) -> str:
    """The folder of ``OUT`` (relative) that a photo with these labels belongs in."""
    if reviewed is not None and is_safe_name(reviewed):
        return f"{NOT_A_CLASS}/{reviewed}" if reviewed in REVIEW_EXTRA_LABELS else reviewed
    return f"{UNREVIEWED}/{predicted if predicted and is_safe_name(predicted) else UNLABELLED}"


def _relative(image_path: str, images_dir: str) -> str | None:
    """The photo's path inside the bin's images_dir, or None when it is outside or odd."""
    path = PurePosixPath(image_path)
    if path.is_absolute():
        try:
            path = path.relative_to(images_dir)
        except ValueError:
            return None
    if ".." in path.parts or not path.parts or not all(is_safe_name(p) for p in path.parts):
        return None
    return str(path)


def _reviews(db: sqlite3.Connection) -> dict[int, str]:
    """Reviewed labels by event id; none from a bin whose smartbin predates reviews."""
    has_table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reviews'").fetchone()
    return reviewed_labels(db) if has_table else {}


def _folders_here(out: Path) -> list[Path]:
    """Every folder of ``OUT`` a photo may sit in from an earlier run (older layouts included)."""
    folders = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for hidden in (UNREVIEWED, NOT_A_CLASS):
        if (out / hidden).is_dir():
            folders += [p for p in (out / hidden).iterdir() if p.is_dir()]
    return folders


def plan(events_db: Path, images_dir: str, out: Path) -> Plan:
    """Photos to fetch per folder, photos to move, and counts."""
    db = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT id, label, image_path FROM events WHERE image_path IS NOT NULL ORDER BY id"
        ).fetchall()
        reviews = _reviews(db)
    except sqlite3.Error as exc:
        raise SmartbinError(f"{events_db}: the bin's event log cannot be read ({exc})") from None
    finally:
        db.close()
    result = Plan()
    todo: dict[str, list[str]] = defaultdict(list)
    folders = _folders_here(out)
    for event_id, label, image_path in rows:
        rel = _relative(image_path, images_dir)
        if rel is None:
            result.odd += 1
            continue
        result.photos += 1
        if event_id in reviews:
            result.reviewed[reviews[event_id]] += 1
        folder = folder_for(label, reviews.get(event_id))
        target = out / folder / rel
        if target.exists():
            result.here += 1
            continue
        elsewhere = next((f / rel for f in folders if (f / rel).is_file()), None)
        if elsewhere is not None:
            result.moves.append((elsewhere, target))
        else:
            todo[folder].append(rel)
    result.todo = dict(todo)
    return result


def _move(moves: list[tuple[Path, Path]], out: Path) -> None:
    """Move photos to the folder of their new review; remove folders left empty (an old ``_unlabelled/``)."""
    for source, target in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    for source, _ in moves:
        folder = source.parent
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def _fetch_events(conn: Connection, side: RemoteSide, out: Path, size: int) -> Path:
    data = conn.run(side.store("export-events"), timeout=side.transfer_timeout(size)).stdout
    part = out / ".events.db.part"
    part.write_bytes(data)
    try:
        db = sqlite3.connect(part)
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            if ok:  # the bin's WAL mode would leave -wal/-shm files next to the copy on each read
                db.execute("PRAGMA journal_mode=DELETE")
        finally:
            db.close()
    except sqlite3.Error:
        ok = False
    if not ok:
        part.unlink(missing_ok=True)
        raise RemoteError(f"the event log from {conn.host} arrived damaged; collect again", "remote")
    final = out / "events.db"
    os.replace(part, final)
    return final


def rsync_from(
    conn: Connection,
    side: RemoteSide,
    remote_dir: str,
    files: list[str],
    dest: Path,
    *,
    recursive: bool = False,
) -> None:
    """Copy ``files`` (relative to ``remote_dir`` on the bin) into ``dest``; files gone there are skipped.

    ``recursive``: ``files`` may name folders, copied with what they hold.
    """
    dest.mkdir(parents=True, exist_ok=True)
    listing = dest / ".collect-files"
    listing.write_text("\n".join(files) + "\n")
    argv = [
        "rsync",
        "-rt" if recursive else "-t",
        "--files-from",
        str(listing),
        f"--timeout={side.command_timeout:.0f}",  # no data for that long: give up (rsync stops both ends)
        "--ignore-missing-args",
        "-e",
        shlex.join(conn.ssh_command()),
        "--",
        conn.host.remote_path(f"{remote_dir}/"),
        f"{dest}/",
    ]
    try:
        result = run_tool(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    finally:
        listing.unlink(missing_ok=True)
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RemoteError(
            f"rsync from {conn.host} failed: {lines[-1] if lines else result.returncode}", "remote"
        )


def collect_from(conn: Connection, out: Path, side: RemoteSide) -> Collected | None:
    """Bring one bin's photos and event log to ``out``; None when the bin has no event log yet."""
    out.mkdir(parents=True, exist_ok=True)
    paths = remote_json(conn, side.store("list"), timeout=side.command_timeout)["paths"]
    if not paths["events_db_exists"]:
        return None
    images_dir = check_plain_path(paths["images_dir"].rstrip("/"), conn)
    events_db = _fetch_events(conn, side, out, int(paths.get("events_db_bytes") or 0))
    todo = plan(events_db, images_dir, out)
    _move(todo.moves, out)
    for folder, files in sorted(todo.todo.items()):
        rsync_from(conn, side, images_dir, files, out / folder)
    fetched = {
        folder: sum((out / folder / rel).exists() for rel in files)
        for folder, files in sorted(todo.todo.items())
    }
    return Collected(_summary(todo, fetched, events_db), sum(todo.reviewed.values()))


def _summary(todo: Plan, fetched: dict[str, int], events_db: Path) -> str:
    db = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        db.close()
    new = sum(fetched.values())
    wanted = sum(len(files) for files in todo.todo.values())
    notes = [f"{todo.here} already here"]
    if todo.moves:
        notes.append(f"{len(todo.moves)} moved to their reviewed folder")
    if wanted > new:
        notes.append(f"{wanted - new} gone from the bin")
    if todo.odd:
        notes.append(f"{todo.odd} with unusable paths skipped")
    folders = ", ".join(f"{folder} {n}" for folder, n in fetched.items() if n)
    reviewed = ", ".join(f"{label} {n}" for label, n in sorted(todo.reviewed.items()))
    return (
        f"{new} new photos{f' ({folders})' if folders else ''}, {'; '.join(notes)}; "
        f"reviewed: {sum(todo.reviewed.values())} of {todo.photos}{f' ({reviewed})' if reviewed else ''}; "
        f"event log: {events} events -> {events_db}"
    )


def host_folder(text: str) -> str:
    """A folder name for a HOST argument (``pi@bin-2:2222`` -> ``pi_bin-2_2222``)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text).lstrip(".") or "bin"


def collect_job(out: Path, side: RemoteSide, *, per_host: bool = False):
    """A :func:`~.fleet.run_on_hosts` job that collects into ``out`` (``out/<HOST>/`` with ``per_host``)."""

    def job(conn: Connection) -> tuple[str, str]:
        got = collect_from(conn, out / host_folder(conn.host.text) if per_host else out, side)
        if got is None:
            return "nothing to collect", "no event log yet (the daemon has not recorded an item)"
        return "collected", got.line

    return job
