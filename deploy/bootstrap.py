"""``smartbin bootstrap HOST...``: make a fresh Raspberry Pi OS machine a bin.

Here: build (or take) the smartbin wheel and read the config and systemd unit. There: one
``python3`` run of :mod:`smartbin.deploy.bootstrap_remote` (stdlib only) that installs apt
packages, the ``smartbin`` user in gpio and video, the directories, a venv with
``--system-site-packages`` (picamera2 and lgpio come from apt), the wheel, the config, one run of
the installed ``smartbin config check`` (a bin whose smartbin cannot start is not reported done,
and its service is not started), the unit, and enables and starts the service. Every step
compares first, so a second run changes nothing and says so.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from smartbin.device.errors import SmartbinError

from . import bootstrap_remote
from .fleet import control_dir
from .ssh import Connection, Host, RemoteError, SshOptions

REPO = Path(__file__).resolve().parents[1]
# Runs on the bin: read the payload from stdin, run the bin-side script from it.
LOADER = (
    "import json,sys;d=json.load(sys.stdin);g={'__name__':'smartbin_bootstrap'};"
    "exec(compile(d['script'],'smartbin-bootstrap','exec'),g);g['main'](d)"
)


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of this checkout (the wheel that goes to the bin)."""
    if not (REPO / "pyproject.toml").is_file():
        raise SmartbinError(f"{REPO} is not a smartbin checkout; build a wheel there and pass --wheel FILE")
    # setuptools builds in the checkout's build/ folder and never empties it: files deleted or renamed
    # since an earlier build (old sample photos, old modules) would ride along in the wheel.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(out.glob("smartbin-*.whl"))
    if result.returncode != 0 or not wheels:
        why = result.stderr.strip().splitlines()
        raise SmartbinError(f"building the smartbin wheel failed: {why[-1] if why else result.returncode}")
    return wheels[0]


def wheel_digest(wheel: Path) -> str:
    """A hash of the wheel's contents, not its zip timestamps: equal for the same code."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(z.namelist()):
                digest.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
    except (OSError, zipfile.BadZipFile) as exc:
        raise SmartbinError(f"{wheel}: not a wheel ({exc})") from None
    return digest.hexdigest()


def _read(path: Path, what: str, hint: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SmartbinError(f"{path}: cannot read the {what} ({exc.strerror}); {hint}") from None


def payload(args: argparse.Namespace, wheel: Path) -> dict[str, object]:
    from smartbin.device.config import EXAMPLE_CONFIG, load_config

    if not wheel.name.startswith("smartbin-") or wheel.suffix != ".whl":
        raise SmartbinError(f"{wheel}: expected a smartbin-<version>-...whl file")
    if args.config:
        load_config(args.config)  # refuse a broken config here, not on the bin
    config = args.config or EXAMPLE_CONFIG
    unit = args.unit or REPO / "systemd" / "smartbin.service"
    return {
        "script": Path(bootstrap_remote.__file__).read_text(encoding="utf-8"),
        "prefix": args.prefix,
        "python": args.remote_python,
        "skip_apt": args.skip_apt,
        "skip_user": args.skip_user,
        "skip_systemd": args.skip_systemd,
        "no_deps": args.no_deps,
        "wheel_name": wheel.name,
        "wheel_digest": wheel_digest(wheel),
        "wheel_b64": base64.b64encode(wheel.read_bytes()).decode("ascii"),
        "config_text": _read(Path(config), "config", "pass --config FILE"),
        "config_explicit": bool(args.config),
        "unit_text": _read(Path(unit), "systemd unit", "pass --unit FILE"),
    }


def bootstrap(args: argparse.Namespace, options: SshOptions, hosts: Sequence[Host]) -> int:
    """Bootstrap each of ``hosts`` in turn, with one wheel; the first that fails ends the run, and
    the error names the hosts not started."""
    tmp = Path(tempfile.mkdtemp(prefix="smartbin-wheel-"))
    try:
        wheel = args.wheel or build_wheel(tmp)
        data = json.dumps(payload(args, wheel)).encode()
        for i, host in enumerate(hosts):
            try:
                _bootstrap_one(args, options, host, data)
            except SmartbinError as exc:
                left = [str(h) for h in hosts[i + 1 :]]
                raise SmartbinError(f"{exc}; not started: {', '.join(left)}" if left else str(exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _bootstrap_one(args: argparse.Namespace, options: SshOptions, host: Host, data: bytes) -> None:
    argv = ["sudo", "-n"] if args.sudo else []
    argv += [args.remote_python, "-c", LOADER]
    try:
        with control_dir() as sockets, Connection(host, options, sockets) as conn:
            # apt and pip on a Pi Zero over Wi-Fi take many minutes; a hung bin is still stopped.
            out = conn.run(argv, input=data, timeout=30 * 60).stdout
    except RemoteError as exc:
        raise SmartbinError(f"bootstrap of {host} failed: {exc}") from None
    try:
        steps = json.loads(out)["steps"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SmartbinError(f"bootstrap of {host}: the bin answered no step list; run with -v") from None
    changed = [s for s in steps if s["changed"]]
    for s in steps:
        print(f"  {s['step']:<9} {'changed' if s['changed'] else 'ok':<8} {s['detail']}")
    if changed:
        print(f"{host}: bootstrapped ({len(changed)} of {len(steps)} steps changed something)")
    else:
        print(f"{host}: already bootstrapped; nothing changed")
