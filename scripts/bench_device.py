#!/usr/bin/env python3
"""Benchmark the device side: per-item latency, start-to-READY time and resident memory.

    python scripts/bench_device.py [--model BUNDLE] [--repeat N] [--starts N] [--json]

- latency: ``smartbin simulate --fast --json`` on the bundled sample photos; ``latency_ms`` is lid
  closed -> servo command (capture of N frames, inference, decision), settle delay excluded.
- READY: ``smartbin run`` (built-in defaults: mock pins, folder camera) spawned with a
  ``NOTIFY_SOCKET``; the time from spawn to the READY=1 datagram, as systemd sees it.
- RSS: the running daemon's VmRSS once READY, and the simulation's peak RSS (VmHWM).

Targets (2-core x86): median latency <= 20 ms, READY <= 1.5 s, RSS <= 150 MB. This is not a
test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMARTBIN = [sys.executable, "-m", "smartbin.device.cli"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_latency(model: str | None, repeat: int, env: dict[str, str]) -> dict[str, float]:
    cmd = [*SMARTBIN, "simulate", "--fast", "--json", "--repeat", str(repeat)]
    if model:
        cmd += ["--model", model]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    items = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    latency = [i["latency_ms"] for i in items]
    return {
        "items": len(items),
        "latency_median_ms": round(statistics.median(latency), 2),
        "latency_p95_ms": round(percentile(latency, 0.95), 2),
        "latency_max_ms": round(max(latency), 2),
        "capture_median_ms": round(statistics.median(i["capture_ms"] for i in items), 2),
        "inference_median_ms": round(statistics.median(i["inference_ms"] for i in items), 2),
        "simulate_peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        "model_version": items[0]["model_version"],
    }


def vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_ready(model: str | None, starts: int, env: dict[str, str]) -> dict[str, float]:
    times, rss = [], []
    with tempfile.TemporaryDirectory(prefix="smartbin-bench-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(f'[classifier]\nmodel = "{model or ""}"\n[paths]\nstate_dir = "{tmp}/state"\n')
        for n in range(starts):
            address = f"{tmp}/notify-{n}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(address)
                sock.settimeout(60)
                start = time.monotonic()
                proc = subprocess.Popen(
                    [*SMARTBIN, "run", "--config", str(config)],
                    env=env | {"NOTIFY_SOCKET": address},
                    stderr=subprocess.DEVNULL,
                )
                try:
                    while "READY=1" not in sock.recv(4096).decode().splitlines():
                        pass
                    times.append(time.monotonic() - start)
                    rss.append(vm(proc.pid, "VmRSS"))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
    return {
        "starts": starts,
        "ready_median_s": round(statistics.median(times), 3),
        "ready_max_s": round(max(times), 3),
        "daemon_rss_mb": round(statistics.median(rss), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model bundle (default: the bundled default model)")
    parser.add_argument(
        "--repeat", type=int, default=20, help="passes over the 12 sample photos (default 20)"
    )
    parser.add_argument("--starts", type=int, default=5, help="daemon starts to time (default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = {
        k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "SMARTBIN_CONFIG")
    }
    model = str(Path(args.model).resolve()) if args.model else None
    results = {"cpus": os.cpu_count()}
    results |= bench_latency(model, args.repeat, env)
    results |= bench_ready(model, args.starts, env)
    if args.json:
        print(json.dumps(results))
        return 0
    targets = {"latency_median_ms": 20, "ready_median_s": 1.5, "daemon_rss_mb": 150}
    for key, value in results.items():
        target = f"  (target <= {targets[key]})" if key in targets else ""
        print(f"{key:<22} {value}{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
