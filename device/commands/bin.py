"""Sub-commands of the device area: run, simulate, classify, status, events, config.

Only argparse and the standard library at module level: each handler imports what it needs,
so ``smartbin --help`` and ``smartbin status`` start fast on a Pi.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from .arguments import (
    add_config_option,
    event_count,
    given_path,
    host_port,
    load_config_of,
    repeat_count,
    thread_count,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    p = subparsers.add_parser("run", help="run the bin daemon (on a Pi, or with any pin factory)")
    add_config_option(p)
    p.set_defaults(func=cmd_run, left_on_interrupt="the daemon stopped before it started sorting")

    p = subparsers.add_parser(
        "simulate",
        help="run the real daemon on mock pins and a folder of photos",
        description="Close the lid once per image (sub-folders included, sorted) and show where each item went.",
    )
    p.add_argument(
        "--images",
        type=given_path,
        metavar="DIR",
        help="photos to feed the camera (default: the bundled samples)",
    )
    p.add_argument(
        "--model",
        type=given_path,
        metavar="BUNDLE",
        help="model bundle (default: as 'smartbin run' resolves it)",
    )
    add_config_option(p)
    p.add_argument(
        "--fast", action="store_true", help="no settle, servo travel or hold waits (all else measured)"
    )
    p.add_argument(
        "--repeat", type=repeat_count, default=1, metavar="N", help="go over the images N times (default 1)"
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object per item on stdout; summary on stderr"
    )
    p.add_argument(
        "--state-dir",
        type=given_path,
        metavar="DIR",
        help="keep the event log and status.json here (default: a temporary dir)",
    )
    p.add_argument(
        "--web",
        type=host_port,
        metavar="HOST:PORT",
        help="serve the review page there (photos saved), and keep serving after the last item until Ctrl-C",
    )
    p.set_defaults(func=cmd_simulate, left_on_interrupt=_simulation_left)

    p = subparsers.add_parser("classify", help="classify image files with a model bundle")
    p.add_argument("images", type=given_path, nargs="+", metavar="IMAGE")
    p.add_argument(
        "--model",
        type=given_path,
        metavar="BUNDLE",
        help="model bundle (default: as 'smartbin run' resolves it)",
    )
    add_config_option(p)
    p.add_argument(
        "--threads", type=thread_count, default=None, help="interpreter threads (default: the config's)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.set_defaults(func=cmd_classify, left_on_interrupt="nothing was written")

    p = subparsers.add_parser("status", help="what the daemon is doing (exit 1 when it is not running)")
    add_config_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print status.json with 'running', 'uptime_s', 'disk_free_bytes' and live warnings added",
    )
    p.set_defaults(func=cmd_status, left_on_interrupt="nothing was changed")

    p = subparsers.add_parser("events", help="recent items from the event log, and totals")
    add_config_option(p)
    p.add_argument(
        "--limit", type=event_count, default=20, metavar="N", help="how many recent events (default 20)"
    )
    p.add_argument("--json", action="store_true", help='one JSON object: {"events": [...], "totals": {...}}')
    p.set_defaults(func=cmd_events, left_on_interrupt="nothing was changed")

    p = subparsers.add_parser("config", help="check a config file, or print an example")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = sub.add_parser(
        "check", help="OK only when 'smartbin run' would start with FILE (paths, camera source, model)"
    )
    c.add_argument("file", type=given_path, metavar="FILE")
    c.set_defaults(func=cmd_config_check, left_on_interrupt="nothing was changed")
    c = sub.add_parser("example", help="print a commented example config (for /etc/smartbin/config.toml)")
    c.set_defaults(func=cmd_config_example, left_on_interrupt="nothing was changed")


def _simulation_left(args: argparse.Namespace) -> str:
    if args.state_dir is None:
        return "nothing was kept"
    return f"the items so far are in {args.state_dir}"


def cmd_run(args: argparse.Namespace) -> int:
    from ..daemon import Daemon
    from ..home.observer_setup import make_observers

    config = load_config_of(args)
    daemon = Daemon(config, observers=make_observers(config))
    daemon.install_signal_handlers()
    daemon.run()
    return 0


def _item_line(n: int, item: Any) -> str:
    from ..files import printable_path

    e = item.event
    where = e.compartment or "no move"
    label = f"{e.label} {e.confidence:.2f}" if e.label else _unlabelled(e.reason)
    note = f" [{e.error}]" if e.error else ""
    truth = f" (is {item.truth})" if item.truth else ""
    timing = f"{e.latency_ms:6.1f} ms (cycle {e.cycle_ms:4.0f} ms)"
    lid = f"  led {item.feedback}" if item.feedback else ""
    fill = f"  fill {_fill_text(item.fill)}" if item.fill else ""
    return f"{n:5d}  {printable_path(item.image.name):<24} {label:<16} -> {where:<10} {e.reason:<15} {timing}{truth}{note}{lid}{fill}"


def _unlabelled(reason: str) -> str:
    """What an event without a label shows: ``empty`` (the empty check) or ``no frame``."""
    return "empty" if reason == "empty" else "no frame"


def _fill_text(fill: dict[str, dict[str, Any]]) -> str:
    """``can 40% glass FULL 95% other ?`` from status' fill levels (``?``: not read, or no echo)."""
    parts = []
    for name, level in fill.items():
        percent = "?" if level["percent"] is None else f"{level['percent']:.0f}%"
        parts.append(f"{name} {'FULL ' if level['full'] else ''}{percent}")
    return ", ".join(parts)


def cmd_simulate(args: argparse.Namespace) -> int:
    import logging
    import threading

    from ..errors import SmartbinError, os_error_reason
    from ..files import check_out_dir, printable_path
    from .simulate import simulate

    if args.state_dir is not None:  # asked for: refused now rather than items left unrecorded
        check_out_dir(args.state_dir, "--state-dir")
        try:
            args.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SmartbinError(
                f"{args.state_dir}: cannot create it ({os_error_reason(exc)}); choose another --state-dir"
            ) from None
    if not args.verbose:  # the simulation prints each item itself
        logging.getLogger("smartbin.device.daemon").setLevel(logging.WARNING)
    count = 0

    def show(item: Any) -> None:
        nonlocal count
        count += 1
        if args.json:
            e = item.event
            record = {"image": printable_path(item.image), "truth": item.truth, **e.to_dict()}
            if item.feedback or item.fill:  # [feedback], [fill.NAME]
                record |= {"feedback": item.feedback, "fill": item.fill}
            print(json.dumps(record), flush=True)
        else:
            print(_item_line(count, item), flush=True)

    out = sys.stderr if args.json else sys.stdout
    serving = False

    def show_page(page: str, link: Any) -> None:  # --web, before the first item
        from .web import show_link

        print(f"review page at {page}; sign in with this link (or 'smartbin web link' later):", file=out)
        if isinstance(link, str):  # why there is none
            print(link, file=out)
        else:
            show_link(link, out)
        out.flush()

    def serve_on(summary: Any) -> None:  # --web: the daemon still runs; its page stays up until Ctrl-C
        nonlocal serving
        print("\n".join(summary.lines()), file=out)
        print(summary.review_page, file=out, flush=True)
        serving = True
        threading.Event().wait()

    try:
        summary = simulate(
            load_config_of(args),
            images=args.images,
            model=args.model,
            fast=args.fast,
            repeat=args.repeat,
            state_dir=args.state_dir,
            on_item=show,
            web=args.web,
            on_page=show_page,
            on_done=serve_on if args.web else None,
        )
    except BrokenPipeError:  # `smartbin simulate | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if not serving:
            raise
        return 0  # after the last item, Ctrl-C is how the page is closed
    print("\n".join(summary.lines()), file=out)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from ..errors import CameraError
    from ..hardware.cameras import read_rgb
    from ..vision.bundle import load_bundle
    from ..vision.classifier import Classifier
    from ..vision.model import resolve_model_path

    config = load_config_of(args)
    path = args.model or resolve_model_path(config)
    classifier = Classifier(load_bundle(path), threads=args.threads or config.classifier.threads)
    failed = 0
    for image in args.images:
        try:
            prediction = classifier.classify(read_rgb(image))
        except CameraError as exc:
            failed += 1
            print(f"smartbin: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            record = {"image": str(image), "label": prediction.label, "confidence": prediction.confidence}
            print(
                json.dumps(record | {"scores": prediction.scores, "model_version": classifier.bundle.version})
            )
        else:
            scores = ", ".join(f"{k} {v:.2f}" for k, v in prediction.scores.items())
            print(f"{image}: {prediction.label} {prediction.confidence:.2f} ({scores})")
    return 1 if failed else 0


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


LOW_DISK_BYTES = 1_000_000  # below this, SQLite and status.json writes fail: say the disk is full


def _live_warnings(state_dir: Path, updated: str | None, running: bool) -> tuple[list[str], int | None]:
    """What ``smartbin status`` sees for itself: a state dir or disk the daemon cannot write
    means that status.json may be stale, whatever it says; a running daemon that has not written
    it for several heartbeats may be hung."""
    from datetime import UTC, datetime

    from ..records.state import HEARTBEAT_S, disk_free_bytes, state_dir_problem

    stale = f"the daemon cannot update status.json, which may be stale (written {updated})"
    warnings = []
    silent = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds() if updated else 0.0
    if running and silent > 3 * HEARTBEAT_S:
        warnings.append(
            f"no heartbeat from the daemon for {silent:.0f} s (status.json written {updated}): it may be hung; "
            "see journalctl -u smartbin"
        )
    problem = state_dir_problem(state_dir)
    if problem:
        warnings.append(f"cannot write the state directory: {problem}; {stale}")
    free = disk_free_bytes(state_dir)
    if free is not None and free < LOW_DISK_BYTES:
        warnings.append(
            f"the disk holding {state_dir} is full ({free} bytes free): items may go unrecorded; {stale}"
        )
    return warnings, free


def _state_dir_of(args: argparse.Namespace) -> Path:
    """The state directory of the config; from a config broken since the daemon started, its
    ``[paths]`` alone (or the default), with a warning: the running bin still has a status."""
    import tomllib

    from ..config import default_config_path, parse_config
    from ..errors import ConfigError

    try:
        return load_config_of(args).paths.state_dir
    except ConfigError as exc:
        path = Path(args.config if args.config is not None else default_config_path()).expanduser()
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            raise exc from None  # not a config at all: no state directory to guess
        try:
            state_dir = parse_config(
                {"paths": document.get("paths", {})}, base=path.resolve().parent
            ).paths.state_dir
        except ConfigError:
            state_dir = parse_config({}).paths.state_dir
        print(
            f"smartbin: warning: {exc}; a running daemon keeps the config it started with "
            f"(fix the file before a restart or reload); its status from {state_dir}:",
            file=sys.stderr,
        )
        return state_dir


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from ..errors import SmartbinError
    from ..records.lock import lock_held
    from ..records.state import bad_status_field, pid_alive, read_status, state_dir_problem

    state_dir = _state_dir_of(args)
    status = read_status(state_dir)
    if status is None:
        problem = state_dir_problem(state_dir)
        if problem:
            raise SmartbinError(
                f"no daemon state in {state_dir} ({problem}): a daemon with this config sorts without "
                "records and cannot say here whether it runs; see its log (journalctl -u smartbin)"
            )
        raise SmartbinError(f"no daemon state in {state_dir}; has 'smartbin run' started with this config?")
    pid = status["pid"]
    held = lock_held(state_dir)  # None: the lock cannot be asked (no access); the PID must do
    running = status.get("state") not in ("stopped", None) and (held if held is not None else pid_alive(pid))
    started = datetime.fromisoformat(status["started"])
    live, free = _live_warnings(state_dir, status.get("updated"), running)
    shown = io.StringIO()  # all or nothing: a field of the wrong kind prints no half status
    try:
        status |= {
            "running": running,
            "uptime_s": round((datetime.now(UTC) - started).total_seconds(), 1) if running else None,
            "disk_free_bytes": free,
            "warnings": [*(status.get("warnings") or []), *live],
        }
        with contextlib.redirect_stdout(shown):
            if args.json:
                print(json.dumps(status, indent=1))
            else:
                _print_status(status)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a hand-edited or damaged file
        raise bad_status_field(state_dir, exc) from exc
    print(shown.getvalue(), end="")
    if not running:
        why = (
            f"it stopped at {status.get('updated')}"
            if status.get("state") == "stopped"
            else f"pid {pid} is gone without stopping cleanly"
        )
        print(f"smartbin: error: the daemon is not running ({why})", file=sys.stderr)
        return 1
    return 0


def _print_status(status: dict[str, Any]) -> None:
    state = (
        f"running (pid {status['pid']}), up {_uptime(status['uptime_s'])}"
        if status["running"]
        else f"not running (last state {status.get('state')}, pid {status.get('pid')})"
    )
    print(f"smartbin: {state}")
    print(f"model:    {status.get('model_version')} ({status.get('model_path')})")
    thresholds = status.get("thresholds")
    if thresholds:
        from ..thresholds import describe

        print(f"sorts at: {describe(thresholds)}")
    print(f"items:    {status.get('items')}")
    last = status.get("last_item")
    if last:
        label = (
            f"{last['label']} {last['confidence']:.2f}" if last.get("label") else _unlabelled(last["reason"])
        )
        print(
            f"last:     {last['ts']} {label} -> {last['compartment'] or 'no move'} ({last['reason']}, {last['latency_ms']:.1f} ms)"
        )
    log = status.get("event_log")
    if log:
        recorded = "recording" if log["recording"] else "NOT RECORDING"
        print(f"records:  {log['path']} ({recorded}, {log['not_recorded']} items not recorded)")
    fill = status.get("fill")
    if fill:
        print(f"fill:     {_fill_text(fill)}")
    _print_empty_reference(status.get("empty_reference"))
    reload = status.get("last_reload")
    if reload and reload["ok"]:
        print(f"reload:   at {reload['at']}, model {reload['model_version']}")
    update = status.get("update")
    if update:
        print(f"update:   {_update_text(update)}")
    mqtt = (status.get("observers") or {}).get("mqtt")
    if mqtt and "broker" in mqtt:
        link = "connected" if mqtt["connected"] else f"NOT CONNECTED ({mqtt['last_error'] or 'connecting'})"
        print(
            f"mqtt:     {mqtt['broker']} {link} since {mqtt['since']}; {mqtt['sent']} events sent, "
            f"{mqtt['queued']} queued, {mqtt['dropped']} dropped"
        )
    web = (status.get("observers") or {}).get("web")
    if web and "listen" in web:
        if web["url"]:
            print(f"web:      {web['url']} (a phone signs in with 'smartbin web link')")
        else:
            print(f"web:      NOT SERVING ({web['error']})")
    for warning in status["warnings"]:
        print(f"warning:  {warning}")


def _update_text(update: dict[str, Any]) -> str:
    """``up to date (channel stable of URL); last check ..., next ...`` from status' ``update``."""
    state = (
        str(update.get("state")).upper()
        if update.get("state") in ("failed", "refused")
        else update.get("state")
    )
    text = f"{state}" + (f": {update['reason']}" if update.get("reason") else "")
    if update.get("channel"):
        text += f" (channel {update['channel']} of {update.get('url')})"
    if update.get("latest_offered"):
        text += f"; offered {update['latest_offered']}"
    if update.get("last_check_at") or update.get("next_check_at"):
        text += f"; last check {update.get('last_check_at') or 'not yet'}, next {update.get('next_check_at') or '-'}"
    return text


def _print_empty_reference(reference: dict[str, Any] | None) -> None:
    if reference is None:  # a daemon from before the empty check
        return
    if reference["set"]:
        print(
            f"empty:    reference from {reference['taken']}, refreshed {reference['refreshed']} times at idle"
        )
    elif reference["problem"]:
        print("empty:    NOT CHECKED (see the warning)")
    else:
        print(
            "empty:    no empty reference is set; 'smartbin calibrate' sets one (lid closed, chamber empty)"
        )


def cmd_events(args: argparse.Namespace) -> int:
    import sqlite3

    from ..errors import SmartbinError
    from ..records.events import read_events
    from ..records.recorder import is_corruption
    from ..records.state import state_dir_problem

    config = load_config_of(args)
    db = config.paths.events_db
    if not db.exists():
        problem = state_dir_problem(db.parent)
        if problem:
            raise SmartbinError(
                f"no event log at {db} ({problem}): the daemon cannot record items; fix paths"
            )
        raise SmartbinError(f"no event log at {db}; no item has been handled with this config yet")
    if db.is_dir():
        raise SmartbinError(f"{db}: is a directory, not an event log; fix paths.events_db")
    try:
        events, totals = read_events(db, limit=args.limit)
    except sqlite3.Error as exc:
        hint = "; the daemon moves a damaged one aside when it starts" if is_corruption(exc) else ""
        raise SmartbinError(f"{db}: cannot read the event log ({exc}){hint}") from None
    if args.json:
        print(json.dumps({"events": events, "totals": totals}))
        return 0
    for e in events:
        label = f"{e['label']} {e['confidence']:.2f}" if e["label"] else _unlabelled(e["reason"])
        note = f" [{e['error']}]" if e["error"] else ""
        print(
            f"{e['id']:6d} {e['ts']} {label:<16} -> {e['compartment'] or 'no move':<10} {e['reason']:<15} {e['latency_ms']:6.1f} ms {e['model_version']}{note}"
        )
    print(f"{totals['items']} items since {totals['first']}; errors {totals['errors']}")
    print("compartments: " + ", ".join(f"{k} {v}" for k, v in totals["by_compartment"].items()))
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in totals["by_reason"].items()))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """OK only when ``smartbin run`` would start with this file (absent hardware apart): the same
    schema, the paths and camera source on disk, and the model loaded and run as the daemon does."""
    from ..config import load_config
    from ..home.observer_setup import make_observers
    from .config_check import check_paths, check_updates, check_web

    config = load_config(args.file)
    for warning in check_paths(config) + check_web(config) + check_updates(config):
        print(f"smartbin: warning: {warning}", file=sys.stderr)
    make_observers(config)  # what they read at start: the MQTT password file, TLS certificates and key
    from ..thresholds import as_status, describe, thresholds_in_force
    from ..vision.model import (  # the TFLite runtime: after the quick checks
        load_classifier,
        resolve_model_path,
    )

    model = resolve_model_path(config)
    bundle = load_classifier(model, config).bundle
    print(
        f"{args.file}: OK (pins {config.gpio.pin_factory}, camera {config.camera.kind}, "
        f"{len(config.servos)} servos, {len(config.compartments)} compartments, model {bundle.version} from {model})"
    )
    thresholds = thresholds_in_force(bundle.labels, bundle.manifest, config.sorting)
    print(f"sorts at confidence: {describe(as_status(thresholds))}")
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    from ..config import EXAMPLE_CONFIG

    sys.stdout.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return 0
