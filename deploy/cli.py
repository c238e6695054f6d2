"""Sub-commands of this area (see smartbin.device.cli).

``deploy``, ``models``, ``bootstrap``, ``collect`` and ``retrain`` run here and reach bins over SSH;
``fleet status`` reads them from the MQTT broker and ``fleet init/publish/refresh/rotate`` keep the
TUF repository of signed bundles they pull (fleet_repo.py); ``store`` runs on a bin (deploy calls
it remotely); ``loopback-bin`` makes this machine a bin to try them on. Handlers import their
modules lazily.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from smartbin.device.commands.arguments import (
    accuracy_points,
    add_config_option,
    given_path,
    load_config_of,
    non_negative_int,
    positive_float,
    positive_int,
)

from . import store_commands
from .rollout import DEFAULT_MAX_BAD, DEFAULT_MAX_DROP, DEFAULT_MIN_ITEMS


def _ssh_options(args: argparse.Namespace) -> Any:
    from smartbin.device.errors import SmartbinError

    from .ssh import SshOptions

    if args.ssh_config is not None and not args.ssh_config.is_file():  # else ssh blames every bin
        raise SmartbinError(f"--ssh-config {args.ssh_config}: no such file; give an ssh config file")
    return SshOptions(
        config_file=args.ssh_config,
        options=tuple(args.ssh_option),
        accept_new_host_key=args.accept_new_host_key,
        connect_timeout=args.connect_timeout,
    )


def _remote_side(args: argparse.Namespace) -> Any:
    from smartbin.device.errors import SmartbinError

    from .deploy import RemoteSide

    try:
        reload = tuple(shlex.split(args.reload_command)) if hasattr(args, "reload_command") else ()
    except ValueError as exc:
        raise SmartbinError(
            f"--reload-command {args.reload_command!r} cannot be split into words ({exc})"
        ) from None
    return RemoteSide(
        smartbin=args.remote_smartbin,
        config=args.remote_config,
        models_dir=args.models_dir,
        reload=reload,
        health_timeout=getattr(args, "health_timeout", 30.0),
        keep=getattr(args, "keep", 2),
        command_timeout=args.command_timeout,
    )


def _finish(results: list[Any]) -> int:
    from .fleet import NOT_STARTED

    failed = [r for r in results if not r.ok and r.outcome != NOT_STARTED]
    skipped = len([r for r in results if r.outcome == NOT_STARTED])
    if failed and len(results) > 1:
        left = f"; {skipped} not started (--serial stopped the run)" if skipped else ""
        print(f"smartbin: {len(failed)} of {len(results)} bins failed{left}", file=sys.stderr)
    return 1 if failed or skipped else 0


def _hosts(args: argparse.Namespace, texts: list[str]) -> list[Any]:
    """The bins to reach: HOSTs as given, or with --inventory the hosts its patterns (and --limit) select."""
    from smartbin.device.errors import SmartbinError

    from .fleet import parse_hosts

    if args.inventory is None:
        if args.limit is not None:
            raise SmartbinError("--limit selects hosts of an inventory; give --inventory FILE too")
        if not texts:
            raise SmartbinError("give at least one HOST (or --inventory FILE and a group)")
        return parse_hosts(texts)
    from .inventory import load_inventory

    inventory = load_inventory(args.inventory)
    if not texts and args.limit is None:
        groups = ", ".join(sorted(inventory.groups))
        raise SmartbinError(
            f"--inventory {args.inventory}: name the bins: a group, a host or all (its groups: {groups})"
        )
    return inventory.hosts(texts or ["all"], limit=args.limit)


def _serial(args: argparse.Namespace) -> Any:
    from smartbin.device.errors import SmartbinError

    from .fleet import Serial

    if args.serial is None:
        if args.max_fail_percentage is not None:
            raise SmartbinError("--max-fail-percentage applies to --serial batches; give --serial N too")
        return None
    return Serial(args.serial, args.max_fail_percentage or 0.0)


def cmd_deploy(args: argparse.Namespace) -> int:
    from smartbin.device.errors import SmartbinError
    from smartbin.device.vision.bundle import MANIFEST_NAME, load_bundle

    from .deploy import deploy_one, rollback_one
    from .fleet import run_on_hosts

    side, options = _remote_side(args), _ssh_options(args)
    serial = _serial(args)
    if args.rollback:
        bundles = [t for t in args.targets if (Path(t) / MANIFEST_NAME).is_file()]
        if bundles:
            raise SmartbinError(f"{bundles[0]} is a model bundle; --rollback takes only hosts")
        hosts = _hosts(args, args.targets)
        results = run_on_hosts(
            hosts,
            options,
            lambda conn: rollback_one(conn, side),
            jobs=args.jobs,
            desc="rolling back",
            serial=serial,
        )
        return _finish(results)
    if not args.targets or (len(args.targets) < 2 and args.inventory is None):
        raise SmartbinError("give a BUNDLE and at least one HOST (or --rollback HOST...)")
    bundle = load_bundle(args.targets[0])
    hosts = _hosts(args, args.targets[1:])
    results = run_on_hosts(
        hosts,
        options,
        lambda conn: deploy_one(conn, bundle, side, dry_run=args.dry_run),
        jobs=args.jobs,
        desc="deploying",
        serial=serial,
    )
    return _finish(results)


def cmd_models(args: argparse.Namespace) -> int:
    from .deploy import list_one
    from .fleet import run_on_hosts
    from .store_commands import listing_text

    side = _remote_side(args)
    listings: dict[str, str] = {}

    def job(conn: Any) -> tuple[str, str]:
        data = list_one(conn, side)
        listings[str(conn.host)] = listing_text(data)
        return "listed", f"live: {data['current'] or 'the bundled default model'}"

    results = run_on_hosts(
        _hosts(args, args.hosts), _ssh_options(args), job, jobs=args.jobs, echo=False, desc="listing"
    )
    for result in results:
        if result.ok:
            print(f"{result.host}: {listings[result.host]}")
        else:
            print(result.line())
    return _finish(results)


def cmd_collect(args: argparse.Namespace) -> int:
    from smartbin.device.files import check_out_dir

    from .collect import collect_job
    from .fleet import run_on_hosts

    check_out_dir(args.out, "--out")
    hosts = _hosts(args, args.hosts)
    job = collect_job(args.out, _remote_side(args), per_host=len(hosts) > 1)
    return _finish(run_on_hosts(hosts, _ssh_options(args), job, jobs=args.jobs, desc="collecting"))


def cmd_retrain(args: argparse.Namespace) -> int:
    from smartbin.device.errors import SmartbinError
    from smartbin.device.files import check_out_dir, dir_problem
    from smartbin.training.backbones import BACKBONES
    from smartbin.training.cli import check_sizes, class_list
    from smartbin.training.dataset import check_split_percents, photo_sets

    from .retrain import RetrainOptions, retrain

    if args.backbone not in BACKBONES:
        raise SmartbinError(f"unknown backbone {args.backbone!r}; choose one of {', '.join(BACKBONES)}")
    for base in args.base:
        problem = dir_problem(base)
        if problem:
            raise SmartbinError(f"--base {base}: {problem}; give a photo set with one sub-folder per class")
    photo_sets(args.base)  # a class folder given as a set, a set given twice: before any bin is reached
    input_size = args.input_size or BACKBONES[args.backbone]
    check_sizes(input_size, args.batch_size)
    check_split_percents(args.val_percent, args.test_percent)
    check_out_dir(args.work, "--work")
    train = {
        "backbone": args.backbone,
        "weights": None if args.weights.lower() == "none" else args.weights,
        "input_size": (input_size,) * 2,
        "batch_size": args.batch_size,
        "head_epochs": args.head_epochs,
        "head_lr": args.head_lr,
        "fine_tune_epochs": 8 if args.fine_tune else 0,
        "seed": args.seed,
        "val_percent": args.val_percent,
        "test_percent": args.test_percent,
        "min_images": args.min_images,
    }
    options = RetrainOptions(
        hosts=_hosts(args, args.hosts),
        base_sets=args.base,
        work=args.work,
        train=train,
        classes=class_list(args.classes),
        max_drop=args.max_drop,
        max_base_drop=args.max_base_drop,
        dry_run=args.dry_run,
    )
    return retrain(options, _ssh_options(args), _remote_side(args))


def cmd_loopback_bin(args: argparse.Namespace) -> int:
    from .loopback import default_dir, run_loopback_bin

    directory = (args.dir or default_dir()).absolute()
    try:
        run_loopback_bin(directory, args.port)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM is how it stops
        print(
            f"loopback-bin: stopped sshd and the daemon; the bin's files stay in {directory} (start it "
            f"again to keep its models and photos, or remove them: rm -r {shlex.quote(str(directory))})"
        )
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import bootstrap

    return bootstrap(args, _ssh_options(args), _hosts(args, args.hosts))


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from .fleet_status import fleet_status

    lines, code = fleet_status(
        load_config_of(args), wait_s=args.wait, stale_s=args.stale * 60, as_json=args.json, repo=args.repo
    )
    print("\n".join(lines))
    return code


def cmd_fleet_guard(args: argparse.Namespace) -> int:
    from smartbin.device.errors import SmartbinError

    from .fleet_repo import channels, halt
    from .fleet_status import bin_states, collect
    from .rollout import halt_reason, standing

    config = load_config_of(args)
    while True:
        pointer = channels(args.repo).get(args.channel)
        if pointer is None:
            raise SmartbinError(
                f"no channel {args.channel!r} in {args.repo}; 'smartbin fleet publish' makes one"
            )
        states = bin_states(collect(config, wait_s=args.wait))
        rollout = standing(args.channel, pointer, states, max_drop=args.max_drop, min_items=args.min_items)
        print(rollout.line(), flush=True)
        reason = halt_reason(rollout, args.max_bad)
        if reason is not None:
            done = halt(args.repo, args.keys, args.channel, reason)
            line = (
                f"halted {done.channel} ({done.version} was offered to {done.was_percent}% of bins): {reason}"
            )
            if not done.released:
                line += "; bins see it once 'smartbin fleet refresh' runs where the snapshot and timestamp keys are"
            print(line)
        if rollout.halted or reason is not None:
            return 1
        if args.every is None:
            return 0
        time.sleep(args.every)


def cmd_fleet_init(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .fleet_repo import init_repo, key_path

    lifetimes = {
        "root": timedelta(days=args.root_expires_days),
        "targets": timedelta(days=args.targets_expires_days),
        "snapshot": timedelta(days=args.snapshot_expires_days),
        "timestamp": timedelta(hours=args.timestamp_expires_hours),
    }
    repo = init_repo(args.repo, args.keys, lifetimes)
    print(f"fleet init: an empty signed repository in {repo.dir} (serve this folder over HTTP(S))")
    print(f"keys (ed25519, mode 0600) in {args.keys}: root.pem, targets.pem, snapshot.pem, timestamp.pem")
    print(
        f"copy {repo.root_file} to each bin and name it in [updates] root; then move "
        f"{key_path(args.keys, 'root')} offline (docs/deploy.md, Fleets: signed updates)"
    )
    return 0


def cmd_fleet_publish(args: argparse.Namespace) -> int:
    from .fleet_repo import publish

    done = publish(args.repo, args.keys, args.bundle, args.channel, args.percent)
    line = (
        f"published {done.version} on channel {done.channel} for {done.percent}% of bins "
        f"(target {done.target}, targets v{done.targets_version})"
    )
    if not done.released:
        line += "; bins see it once 'smartbin fleet refresh' runs where the snapshot and timestamp keys are"
    print(line)
    return 0


def cmd_fleet_refresh(args: argparse.Namespace) -> int:
    from .fleet_repo import refresh

    done = refresh(args.repo, args.keys)
    print(f"refreshed: signed {', '.join(done.signed)} in {args.repo}")
    for warning in done.warnings:
        print(f"smartbin: warning: {warning}", file=sys.stderr)
    return 0


def cmd_fleet_rotate(args: argparse.Namespace) -> int:
    from .fleet_repo import key_path, rotate

    done = rotate(args.repo, args.keys, args.role)
    old = ", ".join(k[:12] for k in done.old_keyids) or "none"
    line = (
        f"rotated {done.role}: new key {done.new_keyid[:12]} in {key_path(args.keys, done.role)}, "
        f"old key {old} revoked (moved to {args.keys / 'retired'}; destroy it) in root v{done.root_version}"
    )
    if done.resigned:
        line += f"; signed {', '.join(done.resigned)} anew"
    if done.pending:
        line += f"; run 'smartbin fleet refresh' where the {' and '.join(done.pending)} keys are"
    print(line)
    return 0


def _add_fleet_repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo",
        type=given_path,
        required=True,
        metavar="REPO_DIR",
        help="the repository (fleet init made it)",
    )
    parser.add_argument(
        "--keys", type=given_path, required=True, metavar="KEYS_DIR", help="where this machine keeps its keys"
    )


def _add_ssh(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("ssh")
    g.add_argument(
        "--ssh-config",
        type=given_path,
        metavar="FILE",
        help="ssh config file to use instead of ~/.ssh/config",
    )
    g.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra ssh option (repeatable), e.g. IdentityFile=~/.ssh/bins",
    )
    g.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust a bin whose host key is not known yet (a changed key is always refused)",
    )
    g.add_argument(
        "--connect-timeout",
        type=positive_int,
        default=10,
        metavar="S",
        help="seconds to wait for a bin to accept the connection (10)",
    )


def serial_sizes(text: str) -> tuple[str, ...]:
    """``--serial``: a batch size, ``N`` or ``N%`` of the bins, or a list of them (``1,25%``) whose
    last one repeats, as Ansible's ``serial``."""
    sizes = tuple(part.strip() for part in text.split(","))
    for size in sizes:
        number = size.removesuffix("%")
        try:
            value = float(number) if size.endswith("%") else int(number)
        except ValueError:
            value = -1
        if size.endswith("%") and not 0 < value <= 100:
            raise argparse.ArgumentTypeError(f"expected a share of the bins from 1% to 100%, got {size!r}")
        if not size.endswith("%") and value < 1:
            raise argparse.ArgumentTypeError(
                f"expected a number of bins (1 or more), N% or a list like 1,25%, got {size!r}"
            )
    return sizes


def fail_percentage(text: str) -> float:
    """``--max-fail-percentage``: 0 to 100 (Ansible's: a batch stops the run when more of it failed)."""
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text!r}") from None
    if not 0 <= value <= 100:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a percentage 0-100, got {text}")
    return value


def _add_inventory(parser: argparse.ArgumentParser) -> None:
    _intermixed(parser)
    g = parser.add_argument_group("inventory (Ansible's, YAML or INI; docs/deploy.md)")
    g.add_argument(
        "-i",
        "--inventory",
        type=given_path,
        metavar="FILE",
        help="read the bins from this Ansible inventory; each HOST is then a pattern of its groups and "
        "hosts: a group, a host, all, bin-*, kitchen:lobby, kitchen:!bin3, kitchen:&east",
    )
    g.add_argument(
        "-l",
        "--limit",
        metavar="PATTERN",
        help="only the inventory's bins that also match PATTERN (alone: of all of them)",
    )


class _Intermixed:
    """A sub-command parser whose positionals may sit between options (``deploy BUNDLE --inventory
    hosts.yml kitchen``), by argparse's ``parse_known_intermixed_args``: plain argparse takes the
    positionals before the first option and calls the rest unrecognised."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:  # parse_known_intermixed_args calls this twice itself
            return super().parse_known_args(args, namespace)  # type: ignore[misc]
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)  # type: ignore[attr-defined]
        finally:
            self._inner = False


def _intermixed(parser: argparse.ArgumentParser) -> None:
    parser.__class__ = type("IntermixedParser", (_Intermixed, type(parser)), {})


def _add_remote(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the bin's side")
    g.add_argument(
        "--remote-smartbin",
        default="smartbin",
        metavar="PATH",
        help="smartbin on the bin (default: smartbin on PATH)",
    )
    g.add_argument(
        "--remote-config",
        metavar="FILE",
        help="config file on the bin (default: the bin's own, see 'smartbin status')",
    )
    g.add_argument(
        "--models-dir", metavar="DIR", help="model store on the bin (default: paths.models_dir of its config)"
    )
    g.add_argument(
        "--command-timeout",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="seconds each command on the bin may take before it is stopped there (60; an upload gets "
        "20 s more per MB)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    store_commands.register(subparsers)

    p = subparsers.add_parser(
        "deploy",
        usage="smartbin deploy [options] BUNDLE HOST [HOST ...]\n       smartbin deploy --rollback [options] HOST [HOST ...]\n"
        "       smartbin deploy [options] BUNDLE --inventory FILE PATTERN [--serial N]",
        help="put a model bundle on bins over SSH (verify, switch, reload, health check, roll back)",
        description="Upload BUNDLE to each HOST, have the bin verify and activate it, reload the daemon and "
        "check that it runs the new model; roll back automatically if not. HOST: user@host, host:port "
        "or an alias from ~/.ssh/config; with --inventory, a group or host of an Ansible inventory. "
        "--serial N goes in rolling batches of N bins and stops at a batch with failures.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="BUNDLE HOST",
        help="bundle directory, then one or more hosts (with --inventory: groups or hosts of it)",
    )
    p.add_argument(
        "--rollback", action="store_true", help="no BUNDLE: make the previous model live on each HOST"
    )
    p.add_argument("--dry-run", action="store_true", help="connect and say what would happen; change nothing")
    p.add_argument("-j", "--jobs", type=positive_int, default=4, metavar="N", help="bins at a time (4)")
    p.add_argument(
        "--reload-command",
        default="systemctl reload smartbin",
        metavar="CMD",
        help="run on the bin after the switch (default: 'systemctl reload smartbin'; '' skips reload and health check)",
    )
    p.add_argument(
        "--health-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds for the daemon to report the new model (30)",
    )
    p.add_argument(
        "--keep",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="old versions kept besides current and previous (2; 0 keeps only those two)",
    )
    p.add_argument(
        "--serial",
        type=serial_sizes,
        metavar="N",
        help="rolling batches of N bins (or N%% of them, or a list like 1,25%%), one batch after the "
        "other; a batch with failures stops the run before the next",
    )
    p.add_argument(
        "--max-fail-percentage",
        type=fail_percentage,
        metavar="P",
        help="with --serial: stop only when more than P%% of a batch failed (0: any failure stops)",
    )
    _add_inventory(p)
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(
        func=cmd_deploy,
        left_on_interrupt="each bin runs the model it had or the new one, never half of one "
        "('smartbin models HOST' says which)",
    )

    p = subparsers.add_parser("models", help="list the model versions on bins and which is live")
    p.add_argument("hosts", nargs="*", metavar="HOST")
    p.add_argument("-j", "--jobs", type=positive_int, default=4, metavar="N", help="bins at a time (4)")
    _add_inventory(p)
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(func=cmd_models, left_on_interrupt="nothing was changed")

    p = subparsers.add_parser(
        "collect",
        help="pull bins' saved photos (by reviewed label) and event logs, incrementally",
        description="Copy the photos a bin saved into DIR/<reviewed label>/ (a photo set for 'smartbin train'), "
        "photos nobody reviewed yet into DIR/.unreviewed/<predicted label>/ and those reviewed as not_trash or "
        "empty into DIR/.not-a-class/<label>/ (training skips folders starting with a dot), and a consistent "
        "copy of its event log to DIR/events.db. Only new photos travel; a photo reviewed since moves. With "
        "several HOSTs, each bin gets its own set DIR/<HOST>/.",
    )
    p.add_argument("hosts", nargs="*", metavar="HOST")
    p.add_argument(
        "--out", type=given_path, required=True, metavar="DIR", help="where to put photos and events.db"
    )
    p.add_argument("-j", "--jobs", type=positive_int, default=4, metavar="N", help="bins at a time (4)")
    _add_inventory(p)
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(func=cmd_collect, left_on_interrupt="what was copied so far stays in {out}")

    p = subparsers.add_parser(
        "retrain",
        help="collect reviewed photos from bins, train, convert, compare with the live model, deploy if better",
        description="The whole loop in one command: collect each HOST's photos by reviewed label into "
        "WORK/bins/<HOST>/, train on the --base sets plus those (head only on cached features unless "
        "--fine-tune), convert to int8 with the parity gate, evaluate the new and the live bundle on the bins' "
        "held-out reviewed photos (the val and test part of the stable split) and on the base test split, and "
        "deploy only where the new one is at least as good on both; otherwise say why and stop. Writes "
        "WORK/report.md.",
    )
    p.add_argument("hosts", nargs="*", metavar="HOST")
    p.add_argument(
        "--base",
        type=given_path,
        action="append",
        required=True,
        metavar="DATA_DIR",
        help="a base photo set (repeatable), as given to 'smartbin train'",
    )
    p.add_argument(
        "--work",
        type=given_path,
        required=True,
        metavar="DIR",
        help="collected photos, run, bundle, evaluations and report.md (keep it: collect is incremental)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="do every step but the deploy; say what it would do"
    )
    p.add_argument(
        "--classes", metavar="A,B,...", help="every class to train (default: the base sets' class folders)"
    )
    p.add_argument(
        "--fine-tune",
        action="store_true",
        help="also fine-tune the top of the backbone (8 epochs; much slower)",
    )
    p.add_argument(
        "--backbone", default="efficientnet_lite0", help="as for 'smartbin train' (efficientnet_lite0)"
    )
    p.add_argument("--weights", default="imagenet", help="as for 'smartbin train' (imagenet)")
    p.add_argument(
        "--input-size", type=positive_int, metavar="N", help="square input size (default: the backbone's)"
    )
    p.add_argument(
        "--head-epochs", type=positive_int, default=30, metavar="N", help="epochs of the head (30)"
    )
    p.add_argument(
        "--head-lr", type=positive_float, default=1e-3, metavar="LR", help="head learning rate (1e-3)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="(32)")
    p.add_argument("--seed", type=non_negative_int, default=1, help="(1)")
    p.add_argument("--val-percent", type=positive_float, default=15.0, metavar="P", help="(15)")
    p.add_argument("--test-percent", type=positive_float, default=15.0, metavar="P", help="(15)")
    p.add_argument(
        "--min-images", type=positive_int, default=10, metavar="N", help="fewest photos a class may have (10)"
    )
    p.add_argument(
        "--max-drop",
        type=accuracy_points,
        default=1.0,
        metavar="POINTS",
        help="parity gate: most accuracy points int8 may lose against Keras (1)",
    )
    p.add_argument(
        "--max-base-drop",
        type=accuracy_points,
        default=0.0,
        metavar="POINTS",
        help="most accuracy points the new model may lose against the live one on the base test split (0)",
    )
    p.add_argument(
        "--reload-command",
        default="systemctl reload smartbin",
        metavar="CMD",
        help="as for 'smartbin deploy'",
    )
    p.add_argument(
        "--health-timeout", type=positive_float, default=30.0, metavar="S", help="as for deploy (30)"
    )
    p.add_argument("--keep", type=non_negative_int, default=2, metavar="N", help="as for deploy (2)")
    _add_inventory(p)
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(
        func=cmd_retrain,
        left_on_interrupt="nothing was deployed unless a 'deployed' line says so; {work} keeps what was done",
    )

    p = subparsers.add_parser(
        "loopback-bin",
        help="a bin on this machine (sshd on 127.0.0.1 and a daemon on mock pins) to try deploy and collect",
        description="Start sshd on 127.0.0.1 (as this user, letting in only a key of its own) and a daemon on "
        "mock pins with the sample photos as its camera, write an ssh config with the alias loopback-bin, "
        "print the commands to try, and serve until Ctrl-C.",
    )
    p.add_argument(
        "--dir",
        type=given_path,
        metavar="DIR",
        help="the bin's files: keys, configs, models, photos, logs (default: ~/.cache/smartbin/loopback-bin)",
    )
    p.add_argument("--port", type=positive_int, metavar="N", help="sshd's port (default: a free one)")
    p.set_defaults(func=cmd_loopback_bin, left_on_interrupt="sshd and the daemon were stopped")

    p = subparsers.add_parser(
        "bootstrap",
        help="prepare a fresh Raspberry Pi OS bin (packages, user, venv, smartbin, config, service)",
        description="Install smartbin on a bin over SSH. Every step checks first and changes only what differs, "
        "so running it again changes nothing.",
    )
    p.add_argument("hosts", nargs="*", metavar="HOST", help="one or more bins, done one after the other")
    p.add_argument("--prefix", default="/", metavar="DIR", help="install under this root (tests; default /)")
    p.add_argument(
        "--wheel", type=given_path, metavar="FILE", help="smartbin wheel to install (default: build one here)"
    )
    p.add_argument(
        "--config",
        type=given_path,
        metavar="FILE",
        help="config to install (default: the example, if none there)",
    )
    p.add_argument(
        "--unit", type=given_path, metavar="FILE", help="systemd unit (default: systemd/smartbin.service)"
    )
    p.add_argument(
        "--remote-python", default="python3", metavar="PATH", help="python on the bin to make the venv with"
    )
    p.add_argument(
        "--sudo", action="store_true", help="run the bin-side steps with 'sudo -n' (when not root)"
    )
    p.add_argument(
        "--no-deps", action="store_true", help="install only smartbin, not its dependencies (offline)"
    )
    p.add_argument("--skip-apt", action="store_true", help="do not install apt packages")
    p.add_argument("--skip-user", action="store_true", help="do not create the smartbin user")
    p.add_argument("--skip-systemd", action="store_true", help="do not install, enable or start the service")
    _add_inventory(p)
    _add_ssh(p)
    p.set_defaults(
        func=cmd_bootstrap,
        left_on_interrupt="the bin may be part-way bootstrapped; run bootstrap again (each step checks first)",
    )

    p = subparsers.add_parser(
        "fleet", help="every bin at once: status from the MQTT broker, signed updates the bins pull"
    )
    fleet = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    f = fleet.add_parser(
        "status",
        help="list every bin from its retained MQTT state; bins that stopped reporting stand out",
        description="Read the retained state and availability of every bin under the config's "
        "mqtt.base_topic (same broker, TLS and credentials as the bins) and print one row per bin: "
        "link, model version, state, items since the daemon started, last item, faults, fill levels, "
        "when the state was published. A bin is STALE when it is offline or its state is older than "
        "--stale. Exit code 1 when any bin is stale.",
    )
    add_config_option(f)
    f.add_argument("--json", action="store_true", help="a JSON list of the bins, one object each")
    f.add_argument(
        "--wait",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="longest to wait for the retained messages (2; it stops sooner once they stop coming)",
    )
    f.add_argument(
        "--stale",
        type=positive_float,
        default=10.0,
        metavar="MINUTES",
        help="a state older than this marks the bin STALE (10)",
    )
    f.add_argument(
        "--repo",
        type=given_path,
        metavar="REPO_DIR",
        help="the fleet's TUF repository (fleet init): also say where each channel's rollout stands",
    )
    f.set_defaults(func=cmd_fleet_status, left_on_interrupt="nothing was changed")

    f = fleet.add_parser(
        "guard",
        help="halt a staged rollout when more than N of the bins it reached fail or lose confidence",
        description="Read every bin's retained MQTT state and count, among the bins that follow CHANNEL, "
        "the bad ones: a bin that refused the channel's bundle or failed its health check, or whose "
        "median confidence on its own items fell by more than --max-drop points from its model before. "
        "With more than --max-bad bad bins, sign the channel anew offering its bundle to no further bin "
        "(needs the targets key; bins that run it keep it; 'fleet publish' starts a rollout again). "
        "Exit code 1 when the rollout is halted.",
    )
    f.add_argument("channel", metavar="CHANNEL")
    _add_fleet_repo(f)
    add_config_option(f)
    f.add_argument(
        "--max-bad", type=non_negative_int, default=DEFAULT_MAX_BAD, metavar="N", help="(%(default)s)"
    )
    f.add_argument(
        "--max-drop",
        type=positive_float,
        default=DEFAULT_MAX_DROP,
        metavar="POINTS",
        help="a fall in median confidence, in points, that makes a bin bad (%(default)g)",
    )
    f.add_argument(
        "--min-items",
        type=positive_int,
        default=DEFAULT_MIN_ITEMS,
        metavar="N",
        help="items on each model before a bin's confidence counts (%(default)s)",
    )
    f.add_argument("--wait", type=positive_float, default=2.0, metavar="S", help="as fleet status (2)")
    f.add_argument(
        "--every", type=positive_float, metavar="S", help="check again every S seconds until halted (once)"
    )
    f.set_defaults(func=cmd_fleet_guard, left_on_interrupt="the channel was not changed by this check")

    f = fleet.add_parser(
        "init",
        help="new signing keys and an empty TUF repository of bundles, as static files",
        description="Make ed25519 keys for the root, targets, snapshot and timestamp roles in KEYS_DIR (mode "
        "0600) and an empty, signed TUF repository in REPO_DIR (consistent snapshots) that any HTTP server, "
        "object store or CDN can serve. Copy REPO_DIR/metadata/root.json to each bin as [updates] root, then "
        "move the root key offline.",
    )
    f.add_argument("repo", type=given_path, metavar="REPO_DIR")
    f.add_argument(
        "--keys", type=given_path, required=True, metavar="KEYS_DIR", help="an empty folder for the keys"
    )
    f.add_argument("--root-expires-days", type=positive_float, default=365.0, metavar="D", help="(365)")
    f.add_argument("--targets-expires-days", type=positive_float, default=90.0, metavar="D", help="(90)")
    f.add_argument("--snapshot-expires-days", type=positive_float, default=7.0, metavar="D", help="(7)")
    f.add_argument(
        "--timestamp-expires-hours",
        type=positive_float,
        default=24.0,
        metavar="H",
        help="(24; 'smartbin fleet refresh' from a timer renews it)",
    )
    f.set_defaults(
        func=cmd_fleet_init, left_on_interrupt="REPO_DIR and KEYS_DIR may be half made; remove both"
    )

    f = fleet.add_parser(
        "publish",
        help="sign a bundle into the repository and point a channel at it",
        description="Check BUNDLE_DIR as deploy does, add its files as one tar target, point the channel "
        "(the signed target channels/NAME.json) at it for PERCENT of the bins, and sign targets; with the "
        "snapshot and timestamp keys here, sign those too so bins see it at their next check.",
    )
    f.add_argument("bundle", type=given_path, metavar="BUNDLE_DIR")
    _add_fleet_repo(f)
    f.add_argument(
        "--channel", required=True, metavar="NAME", help="a channel such as stable (as [updates] channel)"
    )
    f.add_argument(
        "--percent",
        type=positive_int,
        default=100,
        metavar="P",
        help="staged rollout: the share of bins (1-100) offered it, the same bins each time (100)",
    )
    f.set_defaults(
        func=cmd_fleet_publish, left_on_interrupt="the repository holds the old or the new targets"
    )

    f = fleet.add_parser(
        "refresh",
        help="sign a new timestamp (and snapshot, targets when due); run it from a timer",
        description="Sign a new short-lived timestamp, a new snapshot when the targets changed or half its "
        "lifetime passed, and a new targets when its key is here and half its lifetime passed. Run it "
        "more often than the timestamp expires (docs/deploy.md has a systemd timer).",
    )
    _add_fleet_repo(f)
    f.set_defaults(
        func=cmd_fleet_refresh, left_on_interrupt="the repository holds the old or the new timestamp"
    )

    f = fleet.add_parser(
        "rotate",
        help="replace (revoke) a role's key: a new root version signed by the root key",
        description="Make a new key for ROLE, revoke the old one in a new root version signed by the root "
        "key (rotating root: by the old and the new root key), and sign that role's metadata anew. Bins "
        "follow at their next check. Revoking a key is rotating it.",
    )
    f.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"), metavar="ROLE")
    _add_fleet_repo(f)
    f.set_defaults(
        func=cmd_fleet_rotate, left_on_interrupt="check the repository with 'smartbin fleet refresh'"
    )
