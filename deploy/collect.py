"""``smartbin collect``: a bin's saved photos by predicted label, and its event log, incrementally.

1. ``smartbin store export-events`` on the bin copies the event log with SQLite's backup API
   (consistent while the daemon writes) to its standard output -> ``OUT/events.db``.
2. The copy says which photo got which label; photos already in ``OUT/<label>/`` are skipped.
3. One ``rsync --files-from`` per label fetches the rest into ``OUT/<label>/`` (photos the bin
   pruned meanwhile are skipped), so a second run copies nothing that is already here.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path, PurePosixPath

from smartbin.device.bundle import is_safe_name
from smartbin.device.errors import SmartbinError

from .deploy import RemoteSide, check_plain_path, remote_json
from .fleet import control_dir
from .ssh import Connection, Host, RemoteError, SshOptions, run_tool

UNLABELLED = "_unlabelled"


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


def plan(events_db: Path, images_dir: str, out: Path) -> tuple[dict[str, list[str]], int, int]:
    """Photos to fetch per label, how many are here already, and how many rows were unusable."""
    db = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT label, image_path FROM events WHERE image_path IS NOT NULL ORDER BY id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise SmartbinError(f"{events_db}: the bin's event log cannot be read ({exc})") from None
    finally:
        db.close()
    todo: dict[str, list[str]] = defaultdict(list)
    here = odd = 0
    for label, image_path in rows:
        rel = _relative(image_path, images_dir)
        folder = label if label and is_safe_name(label) else UNLABELLED
        if rel is None:
            odd += 1
        elif (out / folder / rel).exists():
            here += 1
        else:
            todo[folder].append(rel)
    return dict(todo), here, odd


def _fetch_events(conn: Connection, side: RemoteSide, out: Path) -> Path:
    data = conn.run(side.store("export-events")).stdout
    part = out / ".events.db.part"
    part.write_bytes(data)
    try:
        db = sqlite3.connect(part)
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
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


def _rsync(conn: Connection, images_dir: str, files: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    listing = dest / ".collect-files"
    listing.write_text("\n".join(files) + "\n")
    argv = [
        "rsync",
        "-t",
        "--files-from",
        str(listing),
        "--ignore-missing-args",
        "-e",
        shlex.join(conn.ssh_command()),
        "--",
        conn.host.remote_path(f"{images_dir}/"),
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


def collect(host: Host, out: Path, options: SshOptions, side: RemoteSide) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with control_dir() as sockets, Connection(host, options, sockets) as conn:
        paths = remote_json(conn, side.store("list"))["paths"]
        if not paths["events_db_exists"]:
            print(f"{host}: no event log yet ({paths['events_db']}); nothing to collect")
            return 0
        images_dir = check_plain_path(paths["images_dir"].rstrip("/"), conn)
        events_db = _fetch_events(conn, side, out)
        todo, here, odd = plan(events_db, images_dir, out)
        for label, files in sorted(todo.items()):
            _rsync(conn, images_dir, files, out / label)
    fetched = {
        label: sum((out / label / rel).exists() for rel in files) for label, files in sorted(todo.items())
    }
    wanted = sum(len(files) for files in todo.values())
    db = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        db.close()
    notes = [f"{here} already here"]
    if wanted > sum(fetched.values()):
        notes.append(f"{wanted - sum(fetched.values())} gone from the bin")
    if odd:
        notes.append(f"{odd} with unusable paths skipped")
    labels = ", ".join(f"{label} {n}" for label, n in fetched.items() if n)
    print(
        f"{host}: {sum(fetched.values())} new photos{f' ({labels})' if labels else ''}, {'; '.join(notes)}; "
        f"event log: {events} events -> {events_db}"
    )
    return 0
