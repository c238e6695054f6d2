"""``smartbin store ...``: the bin-side half of deploy, run on the bin over SSH (or by hand).

Each sub-command prints one JSON object with ``--json`` (what ``smartbin deploy`` reads) or a
short human summary, and fails with one ``smartbin: error:`` line.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from smartbin.device.commands.arguments import given_path, non_negative_int
from smartbin.device.config import Config, default_config_path, load_config
from smartbin.device.errors import SmartbinError, os_error_message
from smartbin.device.vision.store import ModelStore, Switch, verify_bundle


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


def _store(args: argparse.Namespace, config: Config) -> ModelStore:
    models_dir = args.models_dir or config.paths.models_dir
    if models_dir.exists() and not models_dir.is_dir():
        option = "--models-dir" if args.models_dir else "paths.models_dir"
        raise SmartbinError(f"{models_dir}: not a directory; {option} must name the model store's folder")
    return ModelStore(models_dir)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(json.dumps(data, sort_keys=True) if args.json else text)
    return 0


def _paths(config: Config) -> dict[str, Any]:
    p = config.paths
    return {
        "config": str(config.source) if config.source else None,
        "state_dir": str(p.state_dir),
        "events_db": str(p.events_db),
        "events_db_exists": p.events_db.is_file(),
        "events_db_bytes": p.events_db.stat().st_size if p.events_db.is_file() else 0,
        "images_dir": str(p.images_dir),
    }


def listing_text(data: dict[str, Any]) -> str:
    """The human table of a store listing (``store list`` and ``smartbin models``)."""
    lines = [f"models in {data['models_dir']}"]
    if not data["versions"]:
        lines.append("  (none; the bin runs its bundled default model)")
    for v in data["versions"]:
        mark = (
            "live"
            if v["version"] == data["current"]
            else "previous"
            if v["version"] == data["previous"]
            else ""
        )
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v["installed"]))
        what = f"{v['quantization']:<8} {','.join(v['labels'])}" if v["ok"] else f"BROKEN: {v['error']}"
        lines.append(
            f"{'*' if mark == 'live' else ' '} {v['version']:<36} installed {when}  {what}  {mark}".rstrip()
        )
    if data["leftovers"]:
        lines.append(f"  leftovers of interrupted uploads: {len(data['leftovers'])} ('smartbin store clean')")
    if data.get("interrupted_switch"):
        lines.append("  a switch was interrupted (a crash?): 'smartbin store clean' finishes it")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    config = _config(args)
    data = {**_store(args, config).to_json(), "paths": _paths(config)}
    return _emit(args, data, listing_text(data))


def cmd_verify(args: argparse.Namespace) -> int:
    bundle = verify_bundle(Path(args.path), _config(args), expected_sha256=args.sha256)
    data = {"version": bundle.version, "sha256": bundle.sha256, "labels": list(bundle.labels), "ok": True}
    return _emit(args, data, f"{bundle.path}: {bundle.version} is fine for this bin")


def _switched(args: argparse.Namespace, switch: Switch) -> int:
    words = {
        "activated": f"{switch.current} is live (previous: {switch.previous or 'none'})",
        "already-current": f"{switch.current} was already live; nothing changed",
        "repaired": f"{switch.current} is live again (its damaged copy was replaced)",
        "rolled-back": f"rolled back: {switch.current or 'the bundled default model'} is live "
        f"(previous: {switch.previous or 'the bundled default model'})",
        "rejected": f"{switch.replaced} rejected: {switch.current or 'the bundled default model'} is live "
        f"again (previous: {switch.previous or 'none'})",
    }
    return _emit(args, switch.to_json(), words[switch.action])


def cmd_install(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    source = sys.stdin.buffer if args.source == "-" else Path(args.source)
    return _switched(args, store.install(source, config, expected_sha256=args.sha256))


def cmd_activate(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    return _switched(args, store.activate(args.version, config))


def cmd_rollback(args: argparse.Namespace) -> int:
    config = _config(args)
    return _switched(args, _store(args, config).rollback(config))


def cmd_reject(args: argparse.Namespace) -> int:
    config = _config(args)
    return _switched(args, _store(args, config).reject(args.version, args.previous))


def cmd_clean(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(args, config)
    removed = store.clean(keep=args.keep)
    data = {**store.to_json(), "removed": removed, "paths": _paths(config)}
    return _emit(
        args, data, f"removed {len(removed)}: {', '.join(removed)}" if removed else "nothing to clean"
    )


def cmd_export_events(args: argparse.Namespace) -> int:
    """Copy the event log with SQLite's backup API: consistent even while the daemon writes."""
    db = _config(args).paths.events_db
    if not db.is_file():
        raise SmartbinError(f"no event log at {db} yet; the daemon has not recorded an item")
    out = None if args.out == "-" else Path(args.out)
    if out is not None and out.is_dir():
        raise SmartbinError(f"--out {out} is a folder; give a file name, such as {out / 'events.db'}")
    if out is not None and not out.parent.is_dir():
        raise SmartbinError(
            f"--out {out}: no folder {out.parent} to write it in; create it or choose another"
        )
    fd, tmp = tempfile.mkstemp(
        prefix=".events-export-", suffix=".db", dir=None if out is None else out.parent
    )
    os.close(fd)
    try:
        src = sqlite3.connect(db, timeout=30)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        if out is None:
            with open(tmp, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return 0


_DENIED = (errno.EACCES, errno.EPERM)


def _os_errors_as_one_line(func: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except BrokenPipeError:
            raise  # the reader left ('smartbin store list | head'): the CLI stops quietly
        except OSError as exc:
            hint = "; run as root or as a member of the model store's group" if exc.errno in _DENIED else ""
            raise SmartbinError(f"{os_error_message(exc)}{hint}") from None

    return handler


UNCHANGED = "nothing was changed"
CHANGED = "current and previous are as they were or fully switched ('smartbin store list')"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="the model store on this bin (what 'smartbin deploy' runs remotely)",
        description="Inspect and change the model store on this bin: versions side by side, "
        "'current' and 'previous' symlinks switched atomically.",
    )
    subs = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    def add(name: str, help: str, func: Any, left: str = CHANGED) -> argparse.ArgumentParser:
        sub = subs.add_parser(name, help=help, description=help)
        func = _os_errors_as_one_line(func)
        sub.add_argument(
            "--config",
            type=given_path,
            help="bin config (default: $SMARTBIN_CONFIG, /etc/smartbin/config.toml)",
        )
        sub.add_argument(
            "--models-dir", type=given_path, help="the model store (default: paths.models_dir of the config)"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(func=func, left_on_interrupt=left)
        return sub

    add("list", "list the versions in the store and which is live", cmd_list, UNCHANGED)
    sub = add(
        "verify",
        "check a bundle as activation would (checksum, labels, one inference)",
        cmd_verify,
        UNCHANGED,
    )
    sub.add_argument("path", help="bundle directory")
    sub.add_argument("--sha256", help="the model sha256 the sender computed")
    sub = add(
        "install",
        "copy a bundle's own files into the store, check them and make the version live",
        cmd_install,
    )
    sub.add_argument(
        "source", metavar="BUNDLE", help="bundle directory, or '-': a tar of it on stdin (what deploy sends)"
    )
    sub.add_argument("--sha256", help="the model sha256 the sender computed")
    sub = add("activate", "check a version already in the store and make it live", cmd_activate)
    sub.add_argument("version", help="a version in the store")
    add("rollback", "make the previous version live again (twice: back where you were)", cmd_rollback)
    sub = add(
        "reject",
        "a version failed its health check: current and previous back to what they were before it",
        cmd_reject,
    )
    sub.add_argument("version", help="the version that failed (it must still be live)")
    sub.add_argument("--previous", metavar="VERSION", help="what previous was before it went live")
    sub = add("clean", "remove leftovers of interrupted uploads (and old versions with --keep)", cmd_clean)
    sub.add_argument(
        "--keep",
        type=non_negative_int,
        metavar="N",
        help="also remove all but the N newest versions besides current and previous",
    )
    sub = add(
        "export-events",
        "copy the event log safely while the daemon runs (SQLite backup)",
        cmd_export_events,
        UNCHANGED,
    )
    sub.add_argument("--out", default="-", help="file to write ('-': standard output, the default)")
