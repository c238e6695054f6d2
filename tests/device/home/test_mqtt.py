"""MQTT and Home Assistant discovery against a real Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.home import mqtt as mqtt_module
from smartbin.device.home.ha_discovery import event_type, event_types, sorted_labels
from smartbin.device.home.mqtt import MqttObserver
from smartbin.device.records.events import ItemEvent
from smartbin.device.records.state import now_iso, read_status

from ..conftest import fast_config, write_image
from .mqtt_broker import WAIT_S, Broker, Certificates, Subscriber, need_mosquitto

BASE = "smartbin/t1"
DISCOVERY = "homeassistant/device/smartbin_t1/config"
JPEG = b"\xff\xd8"


@pytest.fixture
def subscriber(broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


def mqtt_config(tmp_path, broker, **mqtt):
    return fast_config(
        tmp_path,
        mqtt={"host": "127.0.0.1", "port": broker.port, "bin_id": "t1", **mqtt},
        images={"save": bool(mqtt.get("photo"))},
    )


def until(predicate, what: str):
    """Poll ``predicate`` (a state another thread changes) until true; fail after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def payloads(messages) -> list[dict]:
    return [json.loads(m.payload) for m in messages]


def topics_named(payload: dict) -> set[str]:
    """Every topic the discovery payload names (root and components)."""
    out = set()
    for table in [payload, *payload["cmps"].values()]:
        out |= {v for k, v in table.items() if k.endswith("_topic") and isinstance(v, str)}
    return out


def test_discovery_names_entities_home_assistant_accepts_and_only_topics_that_are_published(
    tmp_path, broker, subscriber, make_bin
):
    config = fast_config(
        tmp_path,
        mqtt={"host": "127.0.0.1", "port": broker.port, "bin_id": "t1", "photo": True},
        images={"save": True},
        fill={"can": {"echo": 20, "trigger": 21, "empty_cm": 60, "full_cm": 10}},
    )
    with make_bin("red", "grey", "blue", config=config, observers=[MqttObserver(config)]) as b:
        events = [b.item() for _ in range(3)]
        subscriber.wait_for(f"{BASE}/event", 3)
        subscriber.wait_for(f"{BASE}/photo")
        state = until_state(subscriber, items=3)
    discovery = json.loads(subscriber.wait_for(DISCOVERY)[0].payload)

    assert {"dev", "o", "cmps"} <= discovery.keys()
    assert discovery["dev"]["ids"] == ["smartbin_t1"] and discovery["dev"]["name"]
    assert discovery["o"]["name"] == "smartbin"
    assert "object_id" not in json.dumps(discovery)  # deprecated: default_entity_id instead
    components = discovery["cmps"].values()
    assert len({c["unique_id"] for c in components}) == len(discovery["cmps"])
    for c in components:
        assert c["default_entity_id"] == f"{c['p']}.{c['unique_id']}"
        assert re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", c["default_entity_id"])
    by_platform: dict[str, list[dict]] = {}
    for c in components:
        by_platform.setdefault(c["p"], []).append(c)
    assert len(by_platform["event"]) == 1 and len(by_platform["image"]) == 1
    # fill level and "full" for the one compartment with a sensor; none for the others
    assert [c["unique_id"] for c in by_platform["binary_sensor"] if c.get("device_class") == "problem"] == [
        "smartbin_t1_full_can"
    ]
    assert sum(c.get("unit_of_measurement") == "%" for c in by_platform["sensor"]) == 2  # + last confidence
    assert any(c.get("entity_category") == "diagnostic" for c in by_platform["sensor"])

    # the event entity knows every event_type the bin sends
    item = by_platform["event"][0]
    sent = payloads(subscriber.on(f"{BASE}/event"))
    assert [e["event_type"] for e in sent] == ["can", "unsure", "plastic"]
    assert {e["event_type"] for e in sent} <= set(item["event_types"])
    assert [e["id"] for e in sent] == [e.id for e in events]

    # every topic it names carries messages; the templates read keys the state has
    for topic in topics_named(discovery):
        assert subscriber.on(topic), f"{topic} is named in the discovery payload but never published"
    assert subscriber.on(by_platform["image"][0]["image_topic"])[-1].payload.startswith(JPEG)
    for c in components:
        for key in re.findall(r"value_json\.(\w+)", c.get("value_template", "")):
            assert key in state, f"{c['unique_id']} reads value_json.{key}, which the state lacks"
        for name in re.findall(r"value_json\.by_compartment\[\"([^\"]+)\"\]", c.get("value_template", "")):
            assert name in state["by_compartment"]
    assert state["by_compartment"] == {"can": 1, "glass": 0, "plastic": 1, "other": 1, "none": 0}
    assert state["fill"] == {"can": {"percent": None, "full": None}}  # a sensor without echo: unknown


def until_state(subscriber: Subscriber, **expected) -> dict:
    """The first state message with ``expected`` values."""
    deadline = time.monotonic() + WAIT_S
    while True:
        for message in subscriber.on(f"{BASE}/state"):
            state = json.loads(message.payload)
            if all(state.get(k) == v for k, v in expected.items()):
                return state
        assert time.monotonic() < deadline, f"no state with {expected}"
        time.sleep(0.02)


def test_one_event_per_item_in_order_and_retained_state_and_availability(tmp_path, broker, make_bin):
    config = mqtt_config(tmp_path, broker)
    colours = ["red", "green", "blue", "red", "green", "blue", "grey", "red"]
    with make_bin(*colours, config=config, observers=[MqttObserver(config)]) as b:
        live = Subscriber(broker.port, topics=(f"{BASE}/#",))
        events = [b.item() for _ in colours]
        received = payloads(live.wait_for(f"{BASE}/event", len(colours)))
        assert [e["id"] for e in received] == [e.id for e in events]
        assert [e["event_type"] for e in received] == [*["can", "glass", "plastic"] * 2, "unsure", "can"]
        assert received[-1]["compartment"] == "can" and received[-2]["reason"] == "low_confidence"
        until_state(live, items=len(colours))
        time.sleep(0.1)
        assert len(live.on(f"{BASE}/event")) == len(colours)  # one each, no repeat

        late = Subscriber(broker.port, topics=(f"{BASE}/#",))  # retained messages only
        state = json.loads(late.wait_for(f"{BASE}/state")[0].payload)
        assert late.wait_for(f"{BASE}/availability")[0].payload == b"online"
        assert not late.on(f"{BASE}/event")  # events are never retained
        assert all(m.retain for m in late.messages)
        assert state["by_label"] == {"can": 4, "glass": 2, "plastic": 2}
        assert state["last_item"]["id"] == events[-1].id and state["model_version"] == "colour3-int8-1"
        assert state["uptime_s"] >= 0
        assert list(state["confidence"]) == ["colour3-int8-1"]
        assert state["confidence"]["colour3-int8-1"]["items"] == len(colours)
        assert 0 < state["confidence"]["colour3-int8-1"]["median"] <= 1
        late.close()
    live.wait_for(f"{BASE}/availability", payload=b"offline")  # a clean stop says goodbye
    after = Subscriber(broker.port, topics=(f"{BASE}/availability",))
    assert after.wait_for(f"{BASE}/availability")[0].payload == b"offline"
    after.close()
    live.close()


def test_state_waits_out_its_interval_and_the_last_one_goes_out_at_a_clean_stop(
    tmp_path, broker, subscriber, make_bin, monkeypatch
):
    assert mqtt_module.STATE_INTERVAL_S == 1.0  # "at most once per second"
    monkeypatch.setattr(mqtt_module, "STATE_INTERVAL_S", 3600.0)  # longer than the test: none is due
    config = mqtt_config(tmp_path, broker)
    observer = MqttObserver(config)
    with make_bin("red", "green", "blue", "red", config=config, observers=[observer]) as b:
        assert json.loads(subscriber.wait_for(f"{BASE}/state")[0].payload)["items"] == 0  # on connect
        for _ in range(4):
            b.item()
        subscriber.wait_for(f"{BASE}/event", 4)  # published after any state due in the same turn
        time.sleep(0.2)
        assert len(subscriber.on(f"{BASE}/state")) == 1  # four changes, none published yet
    states = payloads(subscriber.wait_for(f"{BASE}/state", 2))
    assert len(states) == 2 and states[-1]["items"] == 4 and states[-1]["busy"] is False


def test_an_idle_bin_publishes_its_state_again_so_its_age_says_it_still_reports(
    tmp_path, broker, subscriber, monkeypatch
):
    assert mqtt_module.STATE_REFRESH_S == 60.0  # "at least once a minute"
    monkeypatch.setattr(mqtt_module, "STATE_REFRESH_S", 0.3)
    monkeypatch.setattr(mqtt_module, "STATE_INTERVAL_S", 0.1)
    observer = MqttObserver(mqtt_config(tmp_path, broker))
    observer.started({"model_version": "m", "started": now_iso(), "state": "running"})
    try:
        states = payloads(subscriber.wait_for(f"{BASE}/state", 3))  # nothing changed but the time
    finally:
        observer.stopping()
    assert [s["items"] for s in states] == [0, 0, 0]
    assert states[0]["uptime_s"] < states[1]["uptime_s"] < states[2]["uptime_s"]


def test_home_assistant_coming_online_gets_the_discovery_again(tmp_path, broker, subscriber, make_bin):
    config = mqtt_config(tmp_path, broker)
    with make_bin("red", config=config, observers=[MqttObserver(config)]):
        first = subscriber.wait_for(DISCOVERY)[0].payload
        subscriber.publish("homeassistant/status", b"offline")
        subscriber.publish("homeassistant/status", b"online")
        again = subscriber.wait_for(DISCOVERY, 2)[1].payload
    assert again == first


def test_sorting_goes_on_while_the_broker_is_away_and_the_queue_keeps_the_newest(
    tmp_path, make_bin, capsys, monkeypatch
):
    need_mosquitto()
    monkeypatch.setattr(mqtt_module, "RECONNECT_DELAY_S", (1, 1))  # no growing backoff: a fast test
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", persistence=True)  # the subscriber's session survives
    broker.start()
    subscriber = Subscriber(broker.port, topics=(f"{BASE}/#",), session="test-listener")
    config = mqtt_config(tmp_path, broker, queue_size=3)
    observer = MqttObserver(config)
    state_dir = config.paths.state_dir
    with make_bin(*["red", "green", "blue"] * 2, config=config, observers=[observer]) as b:
        until(lambda: observer.connected, "connected")
        first = b.item()
        until(lambda: observer.status()["sent"] == 1, "the first event sent")
        broker.stop()
        until(lambda: not observer.connected, "the bin notices the broker is gone")
        away = [b.item() for _ in range(5)]  # sorted and recorded without the broker
        assert all(e.compartment for e in away) and [e.id for e in away] == list(range(2, 7))
        until(lambda: (observer.status()["queued"], observer.dropped) == (3, 2), "3 queued, 2 dropped")
        assert not observer.connected and observer.last_error
        # status.json (what `smartbin status` shows) follows while the bin is idle
        until(lambda: read_status(state_dir)["observers"]["mqtt"] == observer.status(), "status.json")
        file = tmp_path / "config.toml"
        file.write_text(f'[paths]\nstate_dir = "{state_dir}"\n')
        assert main(["status", "--config", str(file)]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mqtt:"))
        assert f"mqtt://127.0.0.1:{broker.port} NOT CONNECTED (lost the connection" in line
        assert line.endswith("1 events sent, 3 queued, 2 dropped")

        broker.start()
        until(lambda: observer.status()["sent"] == 4, "the queued events sent")
        until(lambda: 6 in event_ids(subscriber), "the last event heard")
        assert event_ids(subscriber) == [1, 4, 5, 6]  # the newest 3; 2 and 3 dropped and counted
        assert until_state(subscriber, items=6)["items"] == 6
        assert [m.payload for m in subscriber.on(f"{BASE}/availability")][-1] == b"online"
    assert first.id == 1
    assert observer.status()["dropped"] == 2
    subscriber.close()
    broker.stop()


def event_ids(subscriber: Subscriber) -> list[int]:
    """The ids of the events heard, in order, once each (QoS 1 delivers at least once)."""
    return list(dict.fromkeys(e["id"] for e in payloads(subscriber.on(f"{BASE}/event"))))


def test_a_password_file_logs_in_and_a_wrong_password_leaves_the_bin_sorting(tmp_path, make_bin):
    need_mosquitto()
    broker = Broker(tmp_path, users={"bin": "s3cret word"})
    broker.start()
    try:
        good = tmp_path / "password"
        good.write_text("s3cret word\n")
        config = mqtt_config(tmp_path, broker, username="bin", password_file=str(good))
        listener = Subscriber(broker.port, topics=(f"{BASE}/#",), username="bin", password="s3cret word")
        with make_bin("red", config=config, observers=[MqttObserver(config)]) as b:
            b.item()
            listener.wait_for(f"{BASE}/event")
        listener.close()

        bad = tmp_path / "wrong"
        bad.write_text("guess\n")
        config = mqtt_config(tmp_path, broker, username="bin", password_file=str(bad))
        observer = MqttObserver(config)
        with make_bin("red", config=config, observers=[observer]) as b:
            until(lambda: observer.status()["last_error"], "the refusal noted")
            assert b.item().compartment == "can"
            status = observer.status()
        assert not status["connected"] and "not authorized" in status["last_error"].lower()
    finally:
        broker.stop()


def test_tls_with_a_ca_file_and_a_client_certificate(tmp_path, make_bin):
    need_mosquitto()
    certs = Certificates.make(tmp_path)
    broker = Broker(tmp_path, tls=certs)
    broker.start()
    try:
        tls = {"tls": True, "ca_file": str(certs.ca)}
        config = mqtt_config(
            tmp_path, broker, **tls, cert_file=str(certs.client_cert), key_file=str(certs.client_key)
        )
        observer = MqttObserver(config)
        with make_bin("red", config=config, observers=[observer]) as b:
            b.item()
            until(lambda: observer.status()["sent"] == 1, "the event sent over TLS")
            assert observer.status()["broker"] == f"mqtts://127.0.0.1:{broker.port}"

        stranger = MqttObserver(mqtt_config(tmp_path, broker, **tls))  # no client certificate
        with make_bin("red", config=config, observers=[stranger]) as b:
            until(lambda: stranger.status()["last_error"], "the broker turned it away")
            assert b.item().compartment == "can" and not stranger.connected
            assert f"127.0.0.1:{broker.port}" in stranger.status()["last_error"]

        # the certificate names 127.0.0.1 only: reached as localhost, it is not accepted, and we say why
        by_name = MqttObserver(mqtt_config(tmp_path, broker, **tls, host="localhost"))
        with make_bin("red", config=config, observers=[by_name]):
            until(lambda: by_name.status()["last_error"], "the certificate refused")
            assert "its certificate was not accepted" in by_name.status()["last_error"]
            assert "check ca_file and that host is a name the certificate holds" in by_name.last_error
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("mqtt", "says"),
    [
        ({"tls": True}, "); is port {port} the broker's TLS port?"),  # TLS failed (reset, or an EOF)
        ({"host": "nosuchhost.invalid"}, "unknown host nosuchhost.invalid"),
    ],
    ids=["TLS to a plain port", "a host that does not resolve"],
)
def test_why_a_connection_cannot_be_made_is_in_the_status(tmp_path, broker, make_bin, mqtt, says):
    observer = MqttObserver(mqtt_config(tmp_path, broker, **mqtt))
    with make_bin("red", config=observer.config, observers=[observer]) as b:
        until(lambda: observer.status()["last_error"], "the attempt failed")
        assert says.format(port=broker.port) in observer.status()["last_error"]
        assert b.item().compartment == "can"


def test_the_broker_says_offline_when_the_daemon_is_killed(tmp_path, broker, subscriber):
    photos = tmp_path / "photos"
    write_image(photos / "a.png", "red")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[camera]
source = "{photos}"
[classifier]
model = "{Path(__file__).resolve().parents[2] / "fixtures" / "models" / "colour3-int8"}"
threads = 1
[paths]
state_dir = "{tmp_path / "state"}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
bin_id = "t1"
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartbin.device.cli", "run", "--config", str(config)],
        stderr=subprocess.DEVNULL,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        subscriber.wait_for(f"{BASE}/availability", payload=b"online")
        subscriber.wait_for(DISCOVERY)
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT_S)
        will = subscriber.wait_for(f"{BASE}/availability", payload=b"offline")[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert will.payload == b"offline"
    late = Subscriber(broker.port, topics=(f"{BASE}/availability",))
    assert late.wait_for(f"{BASE}/availability")[0].payload == b"offline"  # the will is retained
    late.close()


def test_mqtt_forget_removes_the_device_and_the_retained_topics(tmp_path, broker, make_bin, capsys):
    config = mqtt_config(tmp_path, broker)
    observer = MqttObserver(config)
    with make_bin("red", config=config, observers=[observer]) as b:
        until(lambda: observer.connected, "connected")  # a bin stopped before it connects publishes nothing
        b.item()
    file = tmp_path / "config.toml"
    file.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nbin_id = "t1"\n')
    retained = Subscriber(broker.port, topics=("homeassistant/#", f"{BASE}/#"))
    retained.wait_for(DISCOVERY)
    retained.wait_for(f"{BASE}/state")
    retained.close()

    assert main(["mqtt", "forget", "--config", str(file)]) == 0
    assert DISCOVERY in capsys.readouterr().out
    after = Subscriber(broker.port, topics=("homeassistant/#", f"{BASE}/#"))
    time.sleep(0.3)  # retained messages come at once after subscribing; none are left
    assert after.messages == []
    after.close()


def test_paho_is_imported_only_when_a_broker_is_configured():
    code = (
        "import sys\n"
        "from smartbin.device.cli import main\n"
        "assert main(['simulate', '--fast', '--json']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paho'), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stderr.strip().splitlines()[-1] == "[]"


def event(reason: str, label: str | None = "can", error: str | None = None) -> ItemEvent:
    return ItemEvent(
        "2026-12-01T10:00:00.000+00:00", label, 0.9, {}, None, reason, "m", 1, 1, 1, 1, error=error
    )


def test_event_types_say_what_happened_to_the_item(tmp_path):
    config = fast_config(tmp_path)
    labels = sorted_labels(config)
    assert labels == {"can": "can", "glass": "glass", "plastic": "plastic"} | dict.fromkeys(
        ("cardboard", "paper", "trash"), "other"
    )
    rest = ["cardboard", "paper", "trash"]
    assert event_types(config) == ["can", "glass", "plastic", *rest, "empty", "unsure", "fault"]
    assert event_type(event("sorted"), labels) == "can"
    assert event_type(event("low_confidence"), labels) == "unsure"
    assert event_type(event("unknown_label", "paper"), labels) == "unsure"
    assert event_type(event("unmapped", "empty"), labels) == "empty"
    assert event_type(event("no_frame", None, "camera: 0 of 1 frames"), labels) == "fault"
    assert event_type(event("sorted", error="servo: stuck"), labels) == "fault"
    assert event_type(event("sorted", error="image: disk full"), labels) == "can"  # sorted all the same
    assert event_type(event("full"), labels) == "can"  # another reason: the label, and the reason says why
    assert event_type(event("held:can"), labels) == "can"  # its own compartment full: still its label
    # for the fallback (not sure, or nothing classified), which was full: held, and not a "glass"
    assert event_type(event("held:other", "glass"), labels) == "unsure"
    assert event_type(event("held:other", None, "camera: 0 of 1 frames"), labels) == "fault"


def test_two_bins_with_one_id_are_told_why_they_keep_dropping(tmp_path, broker, make_bin, monkeypatch):
    """Two Pis both named raspberrypi: the broker drops each client when the other connects."""
    monkeypatch.setattr(mqtt_module, "RECONNECT_DELAY_S", (1, 1))
    config = mqtt_config(tmp_path, broker)
    ours, twin = MqttObserver(config), MqttObserver(config)
    hint = "another client may use the id smartbin-t1, so give each bin its own mqtt.bin_id"
    with make_bin("red", config=config, observers=[ours]) as b:
        twin.started(b.daemon.status())
        try:
            until(lambda: any(hint in (o.last_error or "") for o in (ours, twin)), "the clash named")
        finally:
            twin.stopping()
        assert b.item().compartment == "can"  # sorting goes on
