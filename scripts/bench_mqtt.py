#!/usr/bin/env python3
"""Benchmark MQTT publishing: its cost per item, and what arrives when the broker goes away.

    python scripts/bench_mqtt.py [--items N] [--json]

Runs the simulation (``--fast``, the bundled default model, N items over 10 sample photos)
in this process against a Mosquitto broker it starts on 127.0.0.1 (Debian's
/usr/sbin/mosquitto), with a subscriber counting the ``event`` messages:

- ``off``: no [mqtt]; ``up``: the broker up all along;
- ``down-half``: the broker stopped after N/4 items and started again after 3N/4, with the
  default queue (1000) and with ``queue_size = 100``; after the last item the simulation waits
  for the bin to reconnect (paho's backoff) and empty its queue before it stops.

For each: latency (lid closed -> servo command) median and p95, the time the MQTT observer's
hooks take per item (``item_started`` + ``item``, on the daemon's thread), items sorted and
recorded in the event log, distinct events received, and the observer's sent and dropped
counts. This is not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from smartbin.device.commands.simulate import simulate
from smartbin.device.config import load_config
from smartbin.device.hardware.cameras import SAMPLES_DIR, list_images
from smartbin.device.home import mqtt as mqtt_module
from smartbin.device.home.settings import MqttConfig
from smartbin.device.records.state import read_status


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Broker:
    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Counter:
    """Distinct event ids heard on smartbin/+/event (survives broker restarts: it reconnects)."""

    def __init__(self, port: int) -> None:
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("smartbin/+/event", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.05)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.ids.add(json.loads(message.payload)["id"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


HOOK_US: list[float] = []  # each item's time in the MQTT observer's hooks, in microseconds


def time_the_hooks() -> None:
    """Wrap the MQTT observer's item hooks so that each item's time in them goes to HOOK_US."""
    started_at: list[float] = [0.0]
    item_started, item = mqtt_module.MqttObserver.item_started, mqtt_module.MqttObserver.item

    def timed_item_started(self) -> None:
        t = time.perf_counter()
        item_started(self)
        started_at[0] = time.perf_counter() - t

    def timed_item(self, event, status) -> None:
        t = time.perf_counter()
        item(self, event, status)
        HOOK_US.append(1e6 * (started_at[0] + time.perf_counter() - t))

    mqtt_module.MqttObserver.item_started = timed_item_started
    mqtt_module.MqttObserver.item = timed_item


def run(name: str, config, images: Path, items: int, broker: Broker | None, work: Path, down: bool):
    state = work / name
    HOOK_US.clear()
    hook_us = HOOK_US
    counter = Counter(broker.port) if broker else None
    done = [0]

    def on_item(item) -> None:
        done[0] += 1
        if down and done[0] == items // 4:
            broker.stop()
        if down and done[0] == 3 * items // 4:
            broker.start()
        if broker and done[0] == items:  # before the simulation stops: until the bin has caught up
            deadline = time.monotonic() + 40  # paho's backoff waits up to 30 s between attempts
            while time.monotonic() < deadline:
                mqtt = ((read_status(state) or {}).get("observers") or {}).get("mqtt") or {}
                if mqtt.get("connected") and mqtt.get("queued") == 0:
                    break
                time.sleep(0.1)

    t0 = time.perf_counter()
    summary = simulate(config, images=images, fast=True, repeat=items // 10, state_dir=state, on_item=on_item)
    wall = time.perf_counter() - t0
    mqtt = (read_status(state) or {}).get("observers", {}).get("mqtt", {})
    if counter:
        deadline = time.monotonic() + 10
        while len(counter.ids) < mqtt.get("sent", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        counter.close()
    db = sqlite3.connect(state / "events.db")
    recorded = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    db.close()
    lat = summary.latencies_ms
    return {
        "run": name,
        "items_sorted": summary.items,
        "recorded": recorded,
        "latency_median_ms": round(statistics.median(lat), 2),
        "latency_p95_ms": round(percentile(lat, 0.95), 2),
        "wall_s": round(wall, 2),
        "hook_median_us": round(statistics.median(hook_us), 1) if hook_us else None,
        "hook_p95_us": round(percentile(hook_us, 0.95), 1) if hook_us else None,
        "events_received": len(counter.ids) if counter else None,
        "sent": mqtt.get("sent"),
        "dropped": mqtt.get("dropped"),
        "queue_size": mqtt.get("queue_size"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--items", type=int, default=1000, help="items per run, a multiple of 10 (default 1000)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smartbin-bench-mqtt-") as tmp:
        work = Path(tmp)
        images = work / "photos"
        images.mkdir()
        for path in list_images(SAMPLES_DIR)[:10]:
            shutil.copy(path, images / path.name)
        time_the_hooks()
        broker = Broker(work)
        broker.start()
        base = load_config(None)
        on = replace(base, mqtt=MqttConfig(host="127.0.0.1", port=broker.port, bin_id="bench"))
        small = replace(on, mqtt=replace(on.mqtt, queue_size=100))
        results = [
            run("off", base, images, args.items, None, work, down=False),
            run("up", on, images, args.items, broker, work, down=False),
            run("down-half", on, images, args.items, broker, work, down=True),
            run("down-half-queue-100", small, images, args.items, broker, work, down=True),
        ]
        broker.stop()
    for r in results:
        print(json.dumps(r) if args.json else "  ".join(f"{k} {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
