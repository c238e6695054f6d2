#!/usr/bin/env python3
"""Benchmark the review page: /api/status latency while the bin sorts, the daemon's memory with
the page on, the page's first load, and the per-item latency with and without the page.

    python scripts/bench_web.py [--repeat N]

Runs ``smartbin simulate --fast --web 127.0.0.1:PORT --repeat N`` (the bundled default model and
sample photos, photos saved) in a subprocess; while it sorts, one client asks ``/api/status``
back to back (and a second one ``/api/events`` and ``/metrics`` now and then, as a page and a
Prometheus scraper would). After the last item it adds up the first load of the page as a
browser makes it: the HTML, its script and style, ``/api/status``, ``/api/events?limit=24`` and
the 24 thumbnails (bodies plus response headers). This is not a test: numbers depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from smartbin.device.cameras import SAMPLES_DIR, list_images

FIRST_PAGE = 24  # items the page shows at first (app.js' PAGE)
SAMPLES = len(list_images(SAMPLES_DIR))  # photos per --repeat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[bytes, int]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
        head = sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 17
        return body, head


def peak_rss_mb(pid: int) -> float:
    """The process' peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run(repeat: int, web: bool) -> dict:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "smartbin.device.cli",
        "simulate",
        "--fast",
        "--repeat",
        str(repeat),
        "--json",
    ]
    if web:
        command += ["--web", f"127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    latencies: list[float] = []
    status_ms: list[float] = []
    stop = threading.Event()

    def read_items() -> None:
        for line in sim.stdout:
            latencies.append(json.loads(line)["latency_ms"])
        stop.set()

    reader = threading.Thread(target=read_items, daemon=True)
    reader.start()
    peak = [0.0]

    def watch_memory() -> None:
        while sim.poll() is None:
            try:
                peak[0] = max(peak[0], peak_rss_mb(sim.pid))
            except (OSError, KeyError):
                return
            time.sleep(0.05)

    threading.Thread(target=watch_memory, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    result: dict = {"web": web}
    if web:
        while not latencies and sim.poll() is None:
            time.sleep(0.005)

        def scrape() -> None:
            while not stop.is_set():
                get(base + "/api/events?limit=24")
                get(base + "/metrics")
                time.sleep(0.5)

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        items_at_start = len(latencies)
        while not stop.is_set() and len(latencies) < repeat * SAMPLES - 5:
            t = time.perf_counter()
            get(base + "/api/status")
            status_ms.append((time.perf_counter() - t) * 1000)
        result["status_requests_while_sorting"] = len(status_ms)
        result["items_during_requests"] = len(latencies) - items_at_start
        result["status_ms_median_p95_max"] = [
            round(statistics.median(status_ms), 2),
            round(percentile(status_ms, 0.95), 2),
            round(max(status_ms), 2),
        ]
        # after the last item: the first load of the page
        while True:
            status = json.loads(get(base + "/api/status")[0])
            if status["items"] == repeat * SAMPLES:
                break
            time.sleep(0.05)
        total = 0
        for path in (
            "/",
            "/static/app.js",
            "/static/style.css",
            "/api/status",
            f"/api/events?limit={FIRST_PAGE}",
        ):
            body, head = get(base + path)
            total += len(body) + head
            if path.startswith("/api/events"):
                events = json.loads(body)["events"]
        for event in events:
            body, head = get(f"{base}/api/events/{event['id']}/photo?w=160")
            total += len(body) + head
        result["first_load_kb"] = round(total / 1000, 1)
        stop.set()
        scraper.join(10)
        sim.send_signal(signal.SIGINT)
    sim.wait(60)
    reader.join(5)
    result["rc"] = sim.returncode
    result["peak_rss_mb"] = round(peak[0], 1)
    result["items"] = len(latencies)
    result["latency_ms_median_p95"] = [
        round(statistics.median(latencies), 2),
        round(percentile(latencies, 0.95), 2),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=50, help=f"times over the {SAMPLES} sample photos (default 50)"
    )
    args = parser.parse_args()
    for web in (False, True):
        print(json.dumps(run(args.repeat, web)))


if __name__ == "__main__":
    main()
