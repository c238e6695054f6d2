#!/usr/bin/env python3
"""Benchmark signed fleet updates: N simulated bins take a newly published model (issue 21).

    python scripts/bench_fleet_updates.py --bins 10 50 200 [--mode command|schedule]
        [--interval-s 60] [--bundle DIR] [--timeout-s 600] [--out FILE.json]

For each N, on 127.0.0.1 only: a fresh TUF repository (``fleet_repo.init_repo``) served by a
private nginx, one private Mosquitto for all sizes (the runners of tests/), and N bins, each its
own OS process (forked from a forkserver that imported the libraries once) with its own state
dir, model store (starting on the colour3-int8 fixture) and the bin's real update path:
``TufSource`` + ``Updater``, ``updates.install.install`` (model store, then the health check on
one synthetic frame, TFLite included) and the daemon's ``MqttObserver`` publishing the retained
state and listening on ``<base>/<bin_id>/cmd/update``. There is no camera, no pins and no item
loop: the bin's main thread only does what the daemon does between items (take, install,
finish, publish the state). Once every bin's retained state shows the old model, ``--bundle``
(default colour3-float32) is published to the channel at 100 %, then

- ``command``: one ``cmd/update`` publish per bin (scheduled checks an hour away);
- ``schedule``: no command; each bin's checks run every ``--interval-s`` (+-25 % jitter), the
  first one a random share of the interval after the publish (bins already running at random
  phases).

Measured: the time from the publish until a watcher on ``<base>/+/state`` has heard every bin
report the new model (and each bin's time: p50, p95), nginx's requests and bytes (its access
log: body bytes for metadata, channel pointers and bundles; all bytes with headers), and per
bin the CPU seconds it used (getrusage in the bin: start-up, then the update until the end),
its peak RSS (shared library pages included) and its private memory at the end
(/proc/self/smaps_rollup). Numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the nginx and mosquitto runners of tests/

import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from smartbin.deploy.fleet_repo import init_repo, publish  # noqa: E402
from smartbin.device.config import parse_config  # noqa: E402
from smartbin.device.home.mqtt import MqttObserver  # noqa: E402
from smartbin.device.records.state import now_iso  # noqa: E402
from smartbin.device.updates.install import InstallFailed, install  # noqa: E402
from smartbin.device.updates.tuf_source import TufSource  # noqa: E402
from smartbin.device.updates.updater import Updater  # noqa: E402
from smartbin.device.vision.bundle import load_bundle  # noqa: E402
from smartbin.device.vision.model import load_classifier, resolve_model_path  # noqa: E402
from smartbin.device.vision.store import ModelStore  # noqa: E402
from tests.device.home.mqtt_broker import Broker  # noqa: E402
from tests.device.updates.nginx import Nginx  # noqa: E402

MODELS = ROOT / "tests" / "fixtures" / "models"
OLD = MODELS / "colour3-int8"
PRELOAD = [
    "__main__", "numpy", "cv2", "paho.mqtt.client", "tuf.ngclient", "urllib3",
    "smartbin.device.home.mqtt", "smartbin.device.updates.install", "smartbin.device.updates.tuf_source",
    "smartbin.device.vision.classifier", "smartbin.device.vision.runtime",
]  # fmt: skip
LOG_FORMAT = '$status $body_bytes_sent $bytes_sent "$request"'


def memory_kb() -> dict[str, int]:
    """This process's proportional and private memory now, from /proc/self/smaps_rollup."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return {"pss_kb": fields["Pss"], "private_kb": fields["Private_Clean"] + fields["Private_Dirty"]}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_bin(bin_id: str, folder: Path, settings: dict, first_check_s: float, ready, go, stop) -> None:
    """One bin (its own process): the daemon's update path and MQTT, without camera or items."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the bins
    config = parse_config(
        {
            "classifier": {"model": "", "threads": 1},
            "paths": {"state_dir": str(folder / "state"), "models_dir": str(folder / "models")},
            "updates": settings["updates"],
            "mqtt": {**settings["mqtt"], "bin_id": bin_id},
        },
        where=bin_id,
        base=folder,
    )
    ModelStore(config.paths.models_dir).install(OLD, config)
    classifier = load_classifier(resolve_model_path(config).resolve(), config)  # the model it runs
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:180, 80:240] = (200, 40, 40)  # the health check's "real frame of this bin"
    wake = threading.Event()
    directory = config.paths.state_dir / "updates"
    updater = Updater(
        config.updates, TufSource(config.updates, bin_id, directory / "tuf"), directory, wake=wake.set
    )
    updater.first_check_s = first_check_s
    started = now_iso()

    def status() -> dict:
        version = classifier.bundle.version
        return {"model_version": version, "started": started, "state": "ready", "update": updater.status()}

    mqtt = MqttObserver(config)
    mqtt.attach_updates(updater.check_now)
    mqtt.started(status())
    ready.put(bin_id)
    go.wait()
    cpu_ready = cpu_s()
    updater.start(classifier.bundle.version)
    seen, installed_at = updater.status(), None
    while not stop.is_set():
        wake.wait(0.5)
        wake.clear()
        fetched = updater.take()
        if fetched is not None:  # as the daemon does between items
            try:
                classifier = install(fetched.path, config, [frame]).classifier
            except InstallFailed as exc:
                updater.finish(fetched, error=str(exc), remember=exc.remember)
            else:
                updater.finish(fetched)
                installed_at = time.time()
            updater.set_installed(classifier.bundle.version)
        if updater.status() != seen:
            seen = updater.status()
            mqtt.status_changed(status())
    updater.stop()
    mqtt.stopping()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "installed_at": installed_at,
        "cpu_start_s": cpu_ready,
        "cpu_update_s": cpu_s() - cpu_ready,
        "maxrss_kb": usage.ru_maxrss,
    }
    (folder / "result.json").write_text(json.dumps({**result, **memory_kb(), "update": updater.status()}))


class Watcher:
    """Every bin's retained state on ``<base>/+/state``: its model, and when it first showed ``new``."""

    def __init__(self, port: int, base: str, new: str) -> None:
        self.base, self.new = base, new
        self.models: dict[str, str] = {}
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-watcher-{base}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{base}/+/state", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        state = json.loads(message.payload)
        bin_id = message.topic.split("/")[-2]
        with self.cond:
            self.models[bin_id] = state["model_version"]
            if state["model_version"] == self.new:
                self.arrived.setdefault(bin_id, time.monotonic())
            self.cond.notify_all()

    def wait(self, n: int, version: str, deadline: float) -> bool:
        """Until ``n`` bins show ``version``, or the deadline."""
        with self.cond:
            return self.cond.wait_for(
                lambda: sum(v == version for v in self.models.values()) >= n, deadline - time.monotonic()
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def served(access_log: Path) -> dict:
    """Requests and bytes from nginx's access log (LOG_FORMAT), by kind of file."""
    out: dict = {"requests": 0, "bytes_total": 0, "status": {}}
    for line in access_log.read_text().splitlines():
        status, body, total, request = line.split(" ", 3)
        path = request.split()[1]
        kind = "bundle" if "/bundles/" in path else "channel" if "/channels/" in path else "metadata"
        out["requests"] += 1
        out["bytes_total"] += int(total)
        out[f"{kind}_requests"] = out.get(f"{kind}_requests", 0) + 1
        out[f"{kind}_body_bytes"] = out.get(f"{kind}_body_bytes", 0) + int(body)
        out["status"][status] = out["status"].get(status, 0) + 1
    return out


def bench(n: int, args, broker: Broker, work: Path, ctx, deadline: float) -> dict:
    folder = work / f"n{n}"
    repo, keys = folder / "repo", folder / "keys"
    init_repo(repo, keys)
    root = shutil.copy(repo / "metadata" / "root.json", folder / "root.json")
    (folder / "nginx").mkdir()
    nginx = Nginx(folder / "nginx", repo, worker_connections=4 * n + 64, log_format=LOG_FORMAT)
    nginx.start()
    base, new = f"bench{n}", load_bundle(args.bundle).version
    interval = args.interval_s if args.mode == "schedule" else 3600.0
    settings = {
        "updates": {"url": nginx.url, "root": str(root), "channel": "stable", "check_interval_s": interval},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "base_topic": base, "discovery": False},
    }
    ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    rng = random.Random(n)
    procs, watcher = [], None
    try:
        for i in range(n):
            bin_folder = folder / f"bin{i:03d}"
            bin_folder.mkdir()
            first = rng.uniform(0, interval) if args.mode == "schedule" else interval
            procs.append(
                ctx.Process(
                    target=run_bin,
                    args=(f"bin{i:03d}", bin_folder, settings, first, ready, go, stop),
                    daemon=True,
                )
            )
        t_spawn = time.monotonic()
        for p in procs:
            p.start()
        for _ in range(n):
            ready.get(timeout=max(0.1, deadline - time.monotonic()))
        watcher = Watcher(broker.port, base, new)
        if not watcher.wait(n, load_bundle(OLD).version, deadline):
            raise TimeoutError(f"{n} bins: not all reported the old model in time")
        startup_s = time.monotonic() - t_spawn
        published = publish(repo, keys, args.bundle, "stable", 100)
        t0, t0_wall = time.monotonic(), time.time()
        go.set()
        if args.mode == "command":
            for i in range(n):
                watcher.client.publish(f"{base}/bin{i:03d}/cmd/update", b"", qos=1)
        done = watcher.wait(n, new, deadline)
        times = sorted(t - t0 for t in watcher.arrived.values())
    finally:
        stop.set()
        go.set()
        for p in procs:
            p.join(max(1.0, min(10.0, deadline + 15 - time.monotonic())))
        for p in procs:
            if p.is_alive():
                p.kill()
        if watcher is not None:
            watcher.close()
        nginx.stop()
    results = [json.loads(r.read_text()) for r in sorted(folder.glob("bin*/result.json"))]
    installed = sorted(r["installed_at"] - t0_wall for r in results if r["installed_at"] is not None)
    return {
        "bins": n,
        "mode": args.mode,
        "interval_s": interval if args.mode == "schedule" else None,
        "bundle": published.version,
        "all_new": done,
        "updated": len(times),
        "startup_s": round(startup_s, 2),
        "time_all_s": round(times[-1], 2) if done else None,
        "p50_s": round(statistics.median(times), 2) if times else None,
        "p95_s": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 2) if times else None,
        "installed_all_s": round(installed[-1], 2) if len(installed) == n else None,
        "installed_p50_s": round(statistics.median(installed), 2) if installed else None,
        "served": served(folder / "nginx" / "access.log"),
        "reported": len(results),
        "failed": sum(r["update"]["state"] != "up to date" for r in results),
        "cpu_start_s_mean": round(statistics.mean(r["cpu_start_s"] for r in results), 3),
        "cpu_update_s_mean": round(statistics.mean(r["cpu_update_s"] for r in results), 3),
        "cpu_update_s_max": round(max(r["cpu_update_s"] for r in results), 3),
        "maxrss_mb_mean": round(statistics.mean(r["maxrss_kb"] for r in results) / 1024, 1),
        "private_mb_mean": round(statistics.mean(r["private_kb"] for r in results) / 1024, 1),
        "pss_mb_mean": round(statistics.mean(r["pss_kb"] for r in results) / 1024, 1),
    }


def table(rows: list[dict]) -> str:
    head = "| bins | all installed (s) | all reported new, p50 / p95 (s) | requests | metadata / channel / bundle KiB | total KiB | KiB per bin | CPU s per bin (start / update) | peak RSS / private MiB per bin |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s, kib = r["served"], lambda b: f"{b / 1024:.0f}"
        lines.append(
            f"| {r['bins']} | {r['installed_all_s']} | {r['time_all_s']}, {r['p50_s']} / {r['p95_s']} | "
            f"{s['requests']} | "
            f"{kib(s.get('metadata_body_bytes', 0))} / {kib(s.get('channel_body_bytes', 0))} / "
            f"{kib(s.get('bundle_body_bytes', 0))} | {kib(s['bytes_total'])} | {s['bytes_total'] / r['bins'] / 1024:.1f} | "
            f"{r['cpu_start_s_mean']:.2f} / {r['cpu_update_s_mean']:.2f} | {r['maxrss_mb_mean']:.0f} / {r['private_mb_mean']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bins", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--mode", choices=("command", "schedule"), default="command")
    parser.add_argument("--interval-s", type=float, default=60.0, help="check_interval_s in schedule mode")
    parser.add_argument(
        "--bundle", type=Path, default=MODELS / "colour3-float32", help="the bundle to publish"
    )
    parser.add_argument("--timeout-s", type=float, default=600.0, help="for the whole run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout_s
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    rows = []
    with tempfile.TemporaryDirectory(prefix="smartbin-bench-fleet-") as tmp:
        work = Path(tmp)
        (work / "broker").mkdir()
        broker = Broker(work / "broker")
        broker.start()
        try:
            for n in args.bins:
                row = bench(n, args, broker, work, ctx, deadline)
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            broker.stop()
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["all_new"] and not r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
