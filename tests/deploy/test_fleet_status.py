"""``smartbin fleet status`` against a real Mosquitto broker on 127.0.0.1, holding bins' retained messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from smartbin.device.cli import main
from smartbin.device.home.mqtt import MqttObserver

from ..device.conftest import fast_config
from ..device.home.mqtt_broker import Subscriber, free_port


def config_file(tmp_path, port: int, base_topic: str = "smartbin") -> str:
    path = tmp_path / f"{base_topic}.toml"
    path.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbase_topic = "{base_topic}"\n')
    return str(path)


def retain_bin(
    publisher: Subscriber, bin_id: str, *, availability: str, age: timedelta, base="smartbin"
) -> None:
    """A bin's retained availability and a state it published ``age`` ago (as the daemon writes it)."""
    published = datetime.now(UTC) - age
    state = {
        "model_version": f"model-{bin_id}",
        "started": (published - timedelta(seconds=90)).isoformat(timespec="milliseconds"),
        "uptime_s": 90.0,
        "state": "running",
        "busy": False,
        "items": 7,
        "by_label": {"can": 7},
        "by_compartment": {"can": 7, "none": 0},
        "last_item": {"id": 7, "ts": "2026-12-01T10:00:00.000+00:00", "label": "can", "compartment": "can"},
        "fill": {"can": {"percent": 85.0, "full": True}},
        "faults": {"items_with_errors": 1, "warnings": ["camera: slow"]},
    }
    publisher.publish(f"{base}/{bin_id}/availability", availability.encode(), retain=True)
    publisher.publish(f"{base}/{bin_id}/state", json.dumps(state).encode(), retain=True)


def test_fleet_status_lists_every_bin_and_flags_those_that_stopped_reporting(
    tmp_path, broker, publisher, capsys
):
    retain_bin(publisher, "fresh", availability="online", age=timedelta(minutes=1))
    retain_bin(publisher, "gone", availability="offline", age=timedelta(minutes=1))
    retain_bin(publisher, "old", availability="online", age=timedelta(hours=3))
    retain_bin(publisher, "elsewhere", availability="online", age=timedelta(0), base="other")
    config = config_file(tmp_path, broker.port)

    assert main(["fleet", "status", "--config", config]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["BIN", "LINK"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert sorted(rows) == ["fresh", "gone", "old"]  # not the bin under another base_topic
    assert "STALE" not in rows["fresh"]
    for cell in (
        "online",
        "model-fresh",
        "running",
        "can 85% FULL",
        "items with errors: 1; camera: slow",
        " ago)",
    ):
        assert cell in rows["fresh"], (cell, rows["fresh"])
    assert "2026-12-01 10:00 can -> can" in rows["fresh"]
    assert rows["gone"].endswith("STALE: offline")
    assert rows["old"].endswith("STALE: state 3 h old")
    assert lines[-1] == "2 of 3 bins stopped reporting: gone, old"

    assert main(["fleet", "status", "--config", config, "--json", "--stale", "240"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["rollouts"] == []  # no --repo
    bins = {b["bin_id"]: b for b in report["bins"]}
    assert list(bins) == ["fresh", "gone", "old"]
    assert set(bins["fresh"]) == {
        "bin_id", "availability", "model_version", "state", "items", "last_item", "faults", "fill",
        "update", "last_seen", "age_s", "stale",
    }  # fmt: skip
    assert [bins[b]["stale"] for b in bins] == [None, "offline", None]  # 3 h is not stale within 240 minutes
    assert bins["fresh"]["items"] == 7 and bins["fresh"]["availability"] == "online"
    assert bins["fresh"]["last_item"] == {
        "ts": "2026-12-01T10:00:00.000+00:00",
        "label": "can",
        "compartment": "can",
    }
    assert bins["fresh"]["fill"] == {"can": {"percent": 85.0, "full": True}}
    assert 55 <= bins["fresh"]["age_s"] <= 120
    assert 3 * 3600 - 5 <= bins["old"]["age_s"] <= 3 * 3600 + 60


def test_a_running_bin_reports_fresh_and_the_exit_code_is_0(tmp_path, broker, capsys):
    """The state as the daemon's own MQTT observer publishes it, not as this test guesses it."""
    bin_config = fast_config(tmp_path, mqtt={"host": "127.0.0.1", "port": broker.port, "bin_id": "real"})
    observer = MqttObserver(bin_config)
    watcher = Subscriber(broker.port, topics=("smartbin/real/state",))
    observer.started({"model_version": "m1", "started": datetime.now(UTC).isoformat(), "state": "running"})
    try:
        watcher.wait_for("smartbin/real/state")
        assert main(["fleet", "status", "--config", config_file(tmp_path, broker.port), "--json"]) == 0
    finally:
        observer.stopping()
        watcher.close()
    (real,) = json.loads(capsys.readouterr().out)["bins"]
    assert (real["bin_id"], real["availability"], real["model_version"], real["stale"]) == (
        "real",
        "online",
        "m1",
        None,
    )
    assert real["items"] == 0 and real["last_item"] is None and 0 <= real["age_s"] < 10

    assert main(["fleet", "status", "--config", config_file(tmp_path, broker.port)]) == 1  # stopped: offline
    assert capsys.readouterr().out.splitlines()[-1] == "1 of 1 bins stopped reporting: real"


def test_no_bins_and_no_broker_are_one_line_errors(tmp_path, broker, capsys):
    assert main(["fleet", "status", "--config", config_file(tmp_path, broker.port, "empty")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"smartbin: error: no bins found under empty/+ on mqtt://127.0.0.1:{broker.port}\n"

    no_mqtt = tmp_path / "no-mqtt.toml"
    no_mqtt.write_text("[lid]\npin = 17\n")
    assert main(["fleet", "status", "--config", str(no_mqtt)]) == 1
    assert (
        capsys.readouterr().err
        == f"smartbin: error: no MQTT broker in {no_mqtt}; set mqtt.host (and the rest of [mqtt]) first\n"
    )

    port = free_port()  # nothing listens there
    assert main(["fleet", "status", "--config", config_file(tmp_path, port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"smartbin: error: cannot reach the MQTT broker mqtt://127.0.0.1:{port}: connection refused"
    )
    assert err.count("\n") == 1
