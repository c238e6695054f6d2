"""Updates over MQTT: the ``cmd/update`` command on a real Mosquitto broker, the retained state,
and Home Assistant's update entity in the discovery payload."""

from __future__ import annotations

import json
import time

import pytest

from smartbin.device.home.ha_discovery import (
    PAYLOAD_INSTALL,
    UPDATE_TEMPLATE,
    discovery_payload,
    update_state,
)
from smartbin.device.home.mqtt import MqttObserver
from smartbin.device.vision.store import ModelStore

from ..conftest import MODELS, fast_config
from ..home.mqtt_broker import WAIT_S, Subscriber
from .folder_source import FolderSource

BASE = "smartbin/t1"
DISCOVERY = "homeassistant/device/smartbin_t1/config"
UPDATES = {"url": "https://updates.example/bins", "root": "root.json"}


@pytest.fixture
def subscriber(broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


def latest_state(subscriber: Subscriber, wanted, what: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for message in reversed(subscriber.on(f"{BASE}/state")):
            state = json.loads(message.payload)
            if wanted(state):
                return state
        time.sleep(0.05)
    raise AssertionError(f"never in the retained state: {what}")


def test_the_mqtt_command_checks_now_and_the_retained_state_says_how_it_went(
    tmp_path, broker, subscriber, make_bin
):
    models = tmp_path / "models"
    config = fast_config(
        tmp_path,
        classifier={"model": ""},
        paths={"models_dir": str(models)},
        mqtt={"host": "127.0.0.1", "port": broker.port, "bin_id": "t1"},
        updates=UPDATES,
    )
    ModelStore(models).install(MODELS / "colour3-int8", config)
    (tmp_path / "downloads").mkdir()
    source = FolderSource(MODELS, tmp_path / "downloads", offering="colour3-float32")
    with make_bin("blue", config=config, observers=[MqttObserver(config)], update_source=source) as b:
        before = latest_state(subscriber, lambda s: s["update"] is not None, "the update state")
        assert not source.asked.is_set()  # the first scheduled check is a minute away
        subscriber.publish(f"{BASE}/cmd/update", PAYLOAD_INSTALL.encode())
        assert source.asked.wait(WAIT_S), "the command did not start a check"
        after = latest_state(
            subscriber, lambda s: s["update"]["installed_version"] == "colour3-float32-1", "the new model"
        )
        assert b.item().model_version == "colour3-float32-1"
    discovery = json.loads(subscriber.wait_for(DISCOVERY)[0].payload)

    assert before["update"]["installed_version"] == "colour3-int8-1"
    assert before["update"]["state"] == "idle" and before["update"]["next_check_at"]
    update = after["update"]
    assert after["model_version"] == "colour3-float32-1"
    assert update["state"] == "up to date" and update["latest_version"] == "colour3-float32-1"
    assert update["title"] == "smartbin model" and update["in_progress"] is False
    entity = discovery["cmps"]["update"]
    assert entity["command_topic"] == f"{BASE}/cmd/update" and entity["payload_install"] == "install"
    assert entity["state_topic"] == f"{BASE}/state"


def test_a_retained_command_is_not_a_check_at_every_connection(tmp_path, broker, subscriber, make_bin):
    config = fast_config(
        tmp_path, mqtt={"host": "127.0.0.1", "port": broker.port, "bin_id": "t1"}, updates=UPDATES
    )
    (tmp_path / "downloads").mkdir()
    source = FolderSource(MODELS, tmp_path / "downloads")
    subscriber.publish(f"{BASE}/cmd/update", b"install", retain=True)
    with make_bin("blue", config=config, observers=[MqttObserver(config)], update_source=source):
        latest_state(subscriber, lambda s: s["update"] is not None, "the update state")
        subscriber.publish(f"{BASE}/cmd/update", b"install")  # a fresh one is heard
        assert source.asked.wait(WAIT_S)
        time.sleep(0.3)  # a second (retained) check would have come by now
    assert source.offers == 1
    subscriber.publish(f"{BASE}/cmd/update", b"", retain=True)


def test_home_assistant_gets_an_update_entity_only_on_a_bin_that_updates_itself(tmp_path):
    mqtt = {"host": "broker.local", "bin_id": "t1"}
    plain = discovery_payload(fast_config(tmp_path, mqtt=mqtt))
    assert "update" not in plain["cmps"]

    payload = discovery_payload(fast_config(tmp_path, mqtt=mqtt, updates=UPDATES))
    entity = payload["cmps"]["update"]
    assert entity["p"] == "update"
    assert entity["unique_id"] == "smartbin_t1_update"
    assert entity["default_entity_id"] == "update.smartbin_t1_update"
    assert entity["command_topic"] == "smartbin/t1/cmd/update"
    assert entity["payload_install"] == "install"
    assert entity["state_topic"] == "smartbin/t1/state"
    assert entity["value_template"] == UPDATE_TEMPLATE
    for key in ("installed_version", "latest_version", "title", "release_summary", "in_progress"):
        assert f"'{key}': value_json.update.{key}" in UPDATE_TEMPLATE  # the keys HA's entity reads
    assert UPDATE_TEMPLATE.endswith("| tojson }}")


def test_home_assistant_is_offered_no_version_the_bin_will_not_try():
    status = {
        "state": "failed",
        "reason": "v2: health check failed: non-finite scores; rolled back to v1",
        "installed_version": "v1",
        "latest_offered": "v2",
        "not_retried": {"version": "v2", "outcome": "failed", "reason": "...", "at": "..."},
    }
    shown = update_state(status)
    assert shown["latest_version"] == "v1"  # no "update available" button for a version it refuses
    assert shown["release_summary"].startswith("failed: v2: health check failed")
    offered = update_state({**status, "state": "downloading", "reason": None, "not_retried": None})
    assert offered["latest_version"] == "v2" and offered["in_progress"] is True
    assert update_state(None) is None
