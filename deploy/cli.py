"""Sub-commands of this area (see smartbin.device.cli).

``deploy``, ``models``, ``bootstrap`` and ``collect`` run here and reach bins over SSH;
``store`` runs on a bin (deploy calls it remotely). Handlers import their modules lazily.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from . import store_commands


def _ssh_options(args: argparse.Namespace) -> Any:
    from .ssh import SshOptions

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
        health_timeout=getattr(args, "health_timeout", 0.0),
        keep=getattr(args, "keep", 2),
    )


def _finish(results: list[Any]) -> int:
    failed = [r for r in results if not r.ok]
    if failed and len(results) > 1:
        print(f"smartbin: {len(failed)} of {len(results)} bins failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from smartbin.device.bundle import load_bundle
    from smartbin.device.errors import SmartbinError

    from .deploy import deploy_one, rollback_one
    from .fleet import parse_hosts, run_on_hosts

    side, options = _remote_side(args), _ssh_options(args)
    if args.rollback:
        hosts = parse_hosts(args.targets)
        results = run_on_hosts(hosts, options, lambda conn: rollback_one(conn, side), jobs=args.jobs)
        return _finish(results)
    if len(args.targets) < 2:
        raise SmartbinError("give a BUNDLE and at least one HOST (or --rollback HOST...)")
    bundle = load_bundle(args.targets[0])
    hosts = parse_hosts(args.targets[1:])
    results = run_on_hosts(
        hosts, options, lambda conn: deploy_one(conn, bundle, side, dry_run=args.dry_run), jobs=args.jobs
    )
    return _finish(results)


def cmd_models(args: argparse.Namespace) -> int:
    from .deploy import list_one
    from .fleet import parse_hosts, run_on_hosts
    from .store_commands import listing_text

    side = _remote_side(args)
    listings: dict[str, str] = {}

    def job(conn: Any) -> tuple[str, str]:
        data = list_one(conn, side)
        listings[str(conn.host)] = listing_text(data)
        return "listed", f"live: {data['current'] or 'the bundled default model'}"

    results = run_on_hosts(parse_hosts(args.hosts), _ssh_options(args), job, jobs=args.jobs, echo=False)
    for result in results:
        if result.ok:
            print(f"{result.host}: {listings[result.host]}")
        else:
            print(result.line())
    return _finish(results)


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import collect
    from .ssh import parse_host

    return collect(parse_host(args.host), args.out, _ssh_options(args), _remote_side(args))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import bootstrap

    return bootstrap(args, _ssh_options(args))


def _add_ssh(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("ssh")
    g.add_argument(
        "--ssh-config", type=Path, metavar="FILE", help="ssh config file to use instead of ~/.ssh/config"
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
        "--connect-timeout", type=int, default=10, metavar="S", help="seconds to wait for a bin (10)"
    )


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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    store_commands.register(subparsers)

    p = subparsers.add_parser(
        "deploy",
        usage="smartbin deploy [options] BUNDLE HOST [HOST ...]\n       smartbin deploy --rollback [options] HOST [HOST ...]",
        help="put a model bundle on bins over SSH (verify, switch, reload, health check, roll back)",
        description="Upload BUNDLE to each HOST, have the bin verify and activate it, reload the daemon and "
        "check that it runs the new model; roll back automatically if not. HOST: user@host, host:port "
        "or an alias from ~/.ssh/config.",
    )
    p.add_argument(
        "targets", nargs="+", metavar="BUNDLE HOST", help="bundle directory, then one or more hosts"
    )
    p.add_argument(
        "--rollback", action="store_true", help="no BUNDLE: make the previous model live on each HOST"
    )
    p.add_argument("--dry-run", action="store_true", help="connect and say what would happen; change nothing")
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="bins at a time (4)")
    p.add_argument(
        "--reload-command",
        default="systemctl reload smartbin",
        metavar="CMD",
        help="run on the bin after the switch (default: 'systemctl reload smartbin'; '' skips reload and health check)",
    )
    p.add_argument(
        "--health-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds for the daemon to report the new model (30; 0 skips the check)",
    )
    p.add_argument(
        "--keep", type=int, default=2, metavar="N", help="old versions kept besides current and previous (2)"
    )
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(func=cmd_deploy)

    p = subparsers.add_parser("models", help="list the model versions on bins and which is live")
    p.add_argument("hosts", nargs="+", metavar="HOST")
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="bins at a time (4)")
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser(
        "collect",
        help="pull a bin's saved photos (by predicted label) and event log, incrementally",
        description="Copy the photos the bin saved into OUT/<predicted label>/ (only new ones) and a consistent "
        "copy of its event log to OUT/events.db.",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to put photos and events.db")
    _add_remote(p)
    _add_ssh(p)
    p.set_defaults(func=cmd_collect)

    p = subparsers.add_parser(
        "bootstrap",
        help="prepare a fresh Raspberry Pi OS bin (packages, user, venv, smartbin, config, service)",
        description="Install smartbin on a bin over SSH. Every step checks first and changes only what differs, "
        "so running it again changes nothing.",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--prefix", default="/", metavar="DIR", help="install under this root (tests; default /)")
    p.add_argument(
        "--wheel", type=Path, metavar="FILE", help="smartbin wheel to install (default: build one here)"
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="config to install (default: the example, if none there)"
    )
    p.add_argument(
        "--unit", type=Path, metavar="FILE", help="systemd unit (default: systemd/smartbin.service)"
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
    _add_ssh(p)
    p.set_defaults(func=cmd_bootstrap)
