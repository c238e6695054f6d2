#!/usr/bin/env python3
"""Benchmark ``smartbin deploy`` of the bundled default model to 1 and to N loopback bins.

    python scripts/bench_deploy.py [--hosts 1 8] [--repeat 3] [--jobs 8] [--json]

Starts a private sshd on 127.0.0.1 (as the deploy tests do: tests/deploy/conftest.py), makes N
bins (ssh aliases, each with its own config and model store on this machine), and times the whole
``smartbin deploy`` command as a user runs it: connect, clean, upload, activate (checksum, label
check, one inference), reload (tests/deploy/fake_daemon.py: load and check the model as the daemon
does on SIGHUP, write status.json), health check, and again for the no-op redeploy. Each repeat
uses fresh stores. This is not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMARTBIN = str(Path(sys.executable).parent / "smartbin")
DEFAULT_MODEL = REPO / "device" / "data" / "default-model"


def _loopback():
    spec = importlib.util.spec_from_file_location(
        "deploy_loopback", REPO / "tests" / "deploy" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def timed_deploy(fleet, bundle: Path, jobs: int) -> tuple[float, list[str]]:
    reload = shlex.join(
        [sys.executable, str(REPO / "tests/deploy/fake_daemon.py"), "--pid", str(os.getpid())]
    )
    argv = [SMARTBIN, "deploy", str(bundle), *[b.alias for b in fleet.bins], *fleet.ssh_args()]
    argv += ["--jobs", str(jobs), "--reload-command", reload, "--health-timeout", "60"]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"deploy failed:\n{result.stdout}{result.stderr}")
    return seconds, result.stdout.splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    loopback = _loopback()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        sshd, proc = loopback.start_sshd(Path(tmp) / "sshd")
        try:
            for n in args.hosts:
                first, again = [], []
                for r in range(args.repeat):
                    fleet = loopback.build_fleet(sshd, Path(tmp) / f"n{n}-r{r}", n)
                    seconds, lines = timed_deploy(fleet, args.bundle, args.jobs)
                    assert sum("deployed" in x for x in lines) == n, lines
                    first.append(seconds)
                    seconds, lines = timed_deploy(fleet, args.bundle, args.jobs)
                    assert sum("already current" in x for x in lines) == n, lines
                    again.append(seconds)
                results[n] = {
                    "deploy_s": round(statistics.median(first), 2),
                    "deploy_all_s": [round(x, 2) for x in first],
                    "redeploy_noop_s": round(statistics.median(again), 2),
                }
        finally:
            proc.terminate()
            proc.wait(10)
    size = sum(p.stat().st_size for p in args.bundle.iterdir() if p.is_file())
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "bytes": size, "jobs": args.jobs, "results": results}))
    else:
        print(
            f"bundle {args.bundle.name} ({size / 1024:.0f} KiB), --jobs {args.jobs}, median of {args.repeat}:"
        )
        for n, r in results.items():
            print(
                f"  {n} host{'s' if n > 1 else ' '}: deploy {r['deploy_s']:.2f} s (all: {r['deploy_all_s']}), "
                f"no-op redeploy {r['redeploy_noop_s']:.2f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
