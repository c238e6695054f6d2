#!/usr/bin/env python3
"""Benchmark the review page under slow and idle clients: does a well-behaved client still get
``/healthz`` and ``/api/status``, and how fast?

    python scripts/bench_slow_clients.py [--clients 100] [--seconds 20] [--addresses 1]

Runs ``smartbin simulate --fast --web 127.0.0.1:PORT`` in a subprocess (loopback only). After its
18 items, a well-behaved client on 127.0.0.1 asks ``/healthz`` and ``/api/status`` in turn, each on
a fresh connection, 10 times a second with a 10 s timeout: first alone for a quarter of
``--seconds`` (at least 3 s), then for ``--seconds`` while ``--clients`` slow clients (one byte of
a request a second, never the end) and as many idle ones (connect, say nothing) hold connections
from ``--addresses`` other loopback addresses (127.0.1.1, 127.0.1.2...; Linux answers all of 127/8).
A client whose connection the server closes connects again at its next second. Prints one row
per phase and request, and what the server did to the other clients. This is not a test: numbers
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
MAX_CLIENTS = 400  # of each kind: two sockets each stay well under a 1024-file limit
SLOW_START = b"GET /api/status HTTP/1.1\r\nHost: bin\r\nX-Slow: "  # then "a", one byte a second


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


class Attackers:
    """Slow and idle clients on one thread; each one connects again a second after it is closed."""

    def __init__(self, port: int, clients: int, addresses: int) -> None:
        self.port = port
        self.sources = [f"127.0.1.{1 + i % addresses}" for i in range(clients)]
        self.selector = selectors.DefaultSelector()
        self.sent: dict[socket.socket, int] = {}  # slow clients' bytes sent on this connection
        self.closed = {"slow": 0, "idle": 0}  # connections the server closed
        self.opened = 0
        self.waiting = [(kind, source) for source in self.sources for kind in ("slow", "idle")]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, kind: str, source: str) -> None:
        sock = socket.socket()
        try:
            sock.bind((source, 0))
            sock.connect((HOST, self.port))  # the kernel's backlog answers even when waitress does not accept
        except OSError:
            sock.close()
            self.waiting.append((kind, source))
            return
        sock.setblocking(False)
        self.opened += 1
        self.selector.register(sock, selectors.EVENT_READ, (kind, source))
        if kind == "slow":
            self.sent[sock] = 0

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_tick:
                next_tick += 1.0
                waiting, self.waiting = self.waiting, []
                for kind, source in waiting:
                    self._connect(kind, source)
                for sock, sent in list(self.sent.items()):
                    try:
                        sock.send(SLOW_START[sent : sent + 1] or b"a")
                        self.sent[sock] = sent + 1
                    except OSError:
                        pass  # closed: the selector sees it
            for key, _ in self.selector.select(timeout=max(0.0, min(0.2, next_tick - time.monotonic()))):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data:
                    continue  # an answer (an error for a request cut short): read on until closed
                kind, source = key.data
                self.selector.unregister(sock)
                self.sent.pop(sock, None)
                sock.close()
                self.closed[kind] += 1
                self.waiting.append((kind, source))
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def measure(base: str, seconds: float) -> dict[str, tuple[list[float], int]]:
    """path -> (latencies in ms of the answers, failures), asking each path in turn."""
    results: dict[str, tuple[list[float], int]] = {"/healthz": ([], 0), "/api/status": ([], 0)}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path, (latencies, failures) in list(results.items()):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(base + path, timeout=10) as response:
                    response.read()
                latencies.append((time.perf_counter() - start) * 1000)
            except (OSError, urllib.error.URLError):
                results[path] = (latencies, failures + 1)
            time.sleep(0.05)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="slow clients, and as many idle ones")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long they stay (at most 300)")
    parser.add_argument("--addresses", type=int, default=1, help="loopback addresses they come from (1-250)")
    args = parser.parse_args()
    if not (1 <= args.clients <= MAX_CLIENTS and 1 <= args.seconds <= 300 and 1 <= args.addresses <= 250):
        parser.error(f"--clients 1-{MAX_CLIENTS}, --seconds 1-300, --addresses 1-250")
    port = free_port()
    command = [sys.executable, "-m", "smartbin.device.cli", "simulate", "--fast", "--web", f"{HOST}:{port}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in sim.stdout:
            if line.startswith("review page at"):
                break
        else:
            print("bench_slow_clients: the simulation ended before serving its page", file=sys.stderr)
            return 1
        base = f"http://{HOST}:{port}"
        rows = [("alone", measure(base, max(3.0, args.seconds / 4)))]
        attackers = Attackers(port, args.clients, args.addresses)
        attackers.thread.start()
        time.sleep(0.5)  # let them connect first
        rows.append(("attacked", measure(base, args.seconds)))
        attackers.stop.set()
        attackers.thread.join(5)
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
    print(
        f"{args.clients} slow + {args.clients} idle clients from {args.addresses} address(es), "
        f"{args.seconds:g} s; a request times out after 10 s"
    )
    print(
        f"{'phase':<9} {'request':<12} {'answered':>8} {'failed':>6} {'median ms':>9} {'p95 ms':>8} {'max ms':>8}"
    )
    for phase, results in rows:
        for path, (latencies, failures) in results.items():
            stats = (
                f"{statistics.median(latencies):>9.1f} {percentile(latencies, 0.95):>8.1f} {max(latencies):>8.1f}"
                if latencies
                else f"{'-':>9} {'-':>8} {'-':>8}"
            )
            print(f"{phase:<9} {path:<12} {len(latencies):>8} {failures:>6} {stats}")
    print(
        f"other clients: {attackers.opened} connections opened; the server closed "
        f"{attackers.closed['slow']} slow and {attackers.closed['idle']} idle ones"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
