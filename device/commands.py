"""Sub-commands of the device area: run, simulate, classify, status, events, config.

Only argparse and the standard library at module level: each handler imports what it needs,
so ``smartbin --help`` and ``smartbin status`` start fast on a Pi.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $SMARTBIN_CONFIG, else /etc/smartbin/config.toml if it exists, else built-in defaults)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    p = subparsers.add_parser("run", help="run the bin daemon (on a Pi, or with any pin factory)")
    _add_config(p)
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser(
        "simulate",
        help="run the real daemon on mock pins and a folder of photos",
        description="Close the lid once per image (sub-folders included, sorted) and show where each item went.",
    )
    p.add_argument(
        "--images", type=Path, metavar="DIR", help="photos to feed the camera (default: the bundled samples)"
    )
    p.add_argument(
        "--model", type=Path, metavar="BUNDLE", help="model bundle (default: as 'smartbin run' resolves it)"
    )
    _add_config(p)
    p.add_argument(
        "--fast", action="store_true", help="no settle, servo travel or hold waits (all else measured)"
    )
    p.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="go over the images N times (default 1)"
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object per item on stdout; summary on stderr"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep the event log and status.json here (default: a temporary dir)",
    )
    p.set_defaults(func=cmd_simulate)

    p = subparsers.add_parser("classify", help="classify image files with a model bundle")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument(
        "--model", type=Path, metavar="BUNDLE", help="model bundle (default: as 'smartbin run' resolves it)"
    )
    _add_config(p)
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the config's)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.set_defaults(func=cmd_classify)

    p = subparsers.add_parser("status", help="what the daemon is doing (exit 1 when it is not running)")
    _add_config(p)
    p.add_argument(
        "--json", action="store_true", help="print status.json with 'running' and 'uptime_s' added"
    )
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("events", help="recent items from the event log, and totals")
    _add_config(p)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="how many recent events (default 20)")
    p.add_argument("--json", action="store_true", help='one JSON object: {"events": [...], "totals": {...}}')
    p.set_defaults(func=cmd_events)

    p = subparsers.add_parser("config", help="check a config file, or print an example")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a config file and the model it resolves to")
    c.add_argument("file", type=Path, metavar="FILE")
    c.set_defaults(func=cmd_config_check)
    c = sub.add_parser("example", help="print a commented example config (for /etc/smartbin/config.toml)")
    c.set_defaults(func=cmd_config_example)


def _load(args: argparse.Namespace) -> Any:
    from .config import default_config_path, load_config

    return load_config(args.config if args.config is not None else default_config_path())


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon

    daemon = Daemon(_load(args))
    daemon.install_signal_handlers()
    daemon.run()
    return 0


def _item_line(n: int, item: Any) -> str:
    e = item.event
    where = e.compartment or "no move"
    label = f"{e.label} {e.confidence:.2f}" if e.label else "no frame"
    note = f" [{e.error}]" if e.error else ""
    truth = f" (is {item.truth})" if item.truth else ""
    timing = f"{e.latency_ms:6.1f} ms (cycle {e.cycle_ms:4.0f} ms)"
    return f"{n:5d}  {item.image.name:<24} {label:<16} -> {where:<10} {e.reason:<15} {timing}{truth}{note}"


def cmd_simulate(args: argparse.Namespace) -> int:
    import logging

    from .simulate import simulate

    if not args.verbose:  # the simulation prints each item itself
        logging.getLogger("smartbin.device.daemon").setLevel(logging.WARNING)
    count = 0

    def show(item: Any) -> None:
        nonlocal count
        count += 1
        if args.json:
            e = item.event
            record = {"image": str(item.image), "truth": item.truth, **e.to_dict()}
            print(json.dumps(record), flush=True)
        else:
            print(_item_line(count, item), flush=True)

    try:
        summary = simulate(
            _load(args),
            images=args.images,
            model=args.model,
            fast=args.fast,
            repeat=args.repeat,
            state_dir=args.state_dir,
            on_item=show,
        )
    except BrokenPipeError:  # `smartbin simulate | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    out = sys.stderr if args.json else sys.stdout
    print("\n".join(summary.lines()), file=out)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from .bundle import load_bundle
    from .cameras import read_rgb
    from .classifier import Classifier
    from .errors import CameraError
    from .model import resolve_model_path

    config = _load(args)
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


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .errors import SmartbinError
    from .state import pid_alive, read_status

    config = _load(args)
    status = read_status(config.paths.state_dir)
    if status is None:
        raise SmartbinError(
            f"no daemon state in {config.paths.state_dir}; has 'smartbin run' started with this config?"
        )
    pid = int(status.get("pid") or 0)
    running = status.get("state") not in ("stopped", None) and pid > 0 and pid_alive(pid)
    started = datetime.fromisoformat(status["started"])
    status |= {
        "running": running,
        "uptime_s": round((datetime.now(UTC) - started).total_seconds(), 1) if running else None,
    }
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        state = (
            f"running (pid {status['pid']}), up {_uptime(status['uptime_s'])}"
            if running
            else f"not running (last state {status.get('state')}, pid {status.get('pid')})"
        )
        print(f"smartbin: {state}")
        print(f"model:    {status.get('model_version')} ({status.get('model_path')})")
        print(f"items:    {status.get('items')}")
        last = status.get("last_item")
        if last:
            label = f"{last['label']} {last['confidence']:.2f}" if last.get("label") else "no frame"
            print(
                f"last:     {last['ts']} {label} -> {last['compartment'] or 'no move'} ({last['reason']}, {last['latency_ms']:.1f} ms)"
            )
    if not running:
        why = (
            f"it stopped at {status.get('updated')}"
            if status.get("state") == "stopped"
            else f"pid {pid} is gone without stopping cleanly"
        )
        print(f"smartbin: error: the daemon is not running ({why})", file=sys.stderr)
        return 1
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import sqlite3

    from .errors import SmartbinError
    from .events import read_events

    config = _load(args)
    db = config.paths.events_db
    if not db.exists():
        raise SmartbinError(f"no event log at {db}; no item has been handled with this config yet")
    try:
        events, totals = read_events(db, limit=max(0, args.limit))
    except sqlite3.Error as exc:
        raise SmartbinError(f"{db}: cannot read the event log ({exc})") from None
    if args.json:
        print(json.dumps({"events": events, "totals": totals}))
        return 0
    for e in events:
        label = f"{e['label']} {e['confidence']:.2f}" if e["label"] else "no frame"
        note = f" [{e['error']}]" if e["error"] else ""
        print(
            f"{e['id']:6d} {e['ts']} {label:<16} -> {e['compartment'] or 'no move':<10} {e['reason']:<15} {e['latency_ms']:6.1f} ms {e['model_version']}{note}"
        )
    print(f"{totals['items']} items since {totals['first']}; errors {totals['errors']}")
    print("compartments: " + ", ".join(f"{k} {v}" for k, v in totals["by_compartment"].items()))
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in totals["by_reason"].items()))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from .bundle import load_bundle
    from .config import load_config
    from .decision import check_bundle_fits
    from .model import resolve_model_path

    config = load_config(args.file)
    model = resolve_model_path(config)
    bundle = load_bundle(model)
    check_bundle_fits(bundle, config)
    print(
        f"{args.file}: OK (pins {config.gpio.pin_factory}, camera {config.camera.kind}, "
        f"{len(config.servos)} servos, {len(config.compartments)} compartments, model {bundle.version} from {model})"
    )
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    from .config import EXAMPLE_CONFIG

    sys.stdout.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return 0
