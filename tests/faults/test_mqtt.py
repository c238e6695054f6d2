"""MQTT mistakes and faults: a bad [mqtt] table, files the client cannot read, a broker that is not
there or refuses the bin. Each ends in one ``smartbin: error:`` line, or in a bin that keeps
sorting. Every case runs the real command in a subprocess (no traceback allowed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..required import missing
from .conftest import MODELS, assert_one_line_error, run_smartbin


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_with(tmp_path: Path, mqtt: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n{extra}\n[mqtt]\n{mqtt}\n'
    )
    return path


@pytest.mark.parametrize(
    ("mqtt", "extra", "fragments"),
    [
        ('host = "b"\nport = "x"', "", ["config.toml: mqtt.port: expected a TCP port 1-65535, got 'x'"]),
        ('host = "b"\nqos = 3', "", ["mqtt.qos: expected an MQTT QoS 0, 1 or 2, got 3"]),
        ('host = "b"\nbase_topic = "home/#"', "", ["mqtt.base_topic: expected topic levels", "'home/#'"]),
        ('host = "b"\ndiscovery_prefix = "ha//x"', "", ["mqtt.discovery_prefix: expected topic levels"]),
        ('host = "b"\nbin_id = "Kitchen Bin"', "", ["mqtt.bin_id: expected an id of 1-64 characters a-z"]),
        (f'host = "b"\nbin_id = "{"k" * 65}"', "", ["mqtt.bin_id: expected an id of 1-64 characters"]),
        # the broker's own topics: Mosquitto drops what clients publish there, and says nothing
        (
            'host = "b"\nbase_topic = "$SYS/bins"',
            "",
            ["mqtt.base_topic: expected", "leading $", "'$SYS/bins'"],
        ),
        ('host = "mqtt://broker.lan"', "", ["mqtt.host: give the host alone, without mqtt://"]),
        ('host = "broker.lan:1883"', "", ["mqtt.host: give the host alone and its port as port = N"]),
        ('host = " "', "", ["mqtt.host: has spaces"]),
        ('host = "b"\nbroker = "b"', "", ["mqtt.broker: unknown key (known here: base_topic, bin_id"]),
        ('host = "b"\nphoto = true', "", ["mqtt.photo: needs images.save = true"]),
        (
            'host = "b"\npassword_file = "pw"',
            "",
            ["mqtt.username: missing; a password_file needs a username"],
        ),
        ('host = "b"\nca_file = "ca.pem"', "", ["mqtt.ca_file: applies with tls = true only"]),
        (
            'host = "b"\ntls = true\ncert_file = "c.pem"',
            "",
            ["mqtt.key_file: missing; a client certificate needs both cert_file and key_file"],
        ),
        (
            'host = "b"\nusername = "bin"\npassword_file = "missing"',
            "",
            ["config.toml: mqtt.password_file: cannot read", "missing: no such file or folder"],
        ),
    ],
)
def test_a_bad_mqtt_table_is_refused_in_one_line(tmp_path, mqtt, extra, fragments):
    result = run_smartbin("config", "check", config_with(tmp_path, mqtt, extra), timeout=60)
    assert_one_line_error(result, *fragments)


def test_run_refuses_a_password_file_it_cannot_read_before_touching_anything(tmp_path):
    config = config_with(tmp_path, f'host = "127.0.0.1"\nusername = "bin"\npassword_file = "{tmp_path}"')
    result = run_smartbin("run", "--config", config, timeout=60)
    assert_one_line_error(result, f"mqtt.password_file: cannot read {tmp_path}: is a directory")
    assert not (tmp_path / "state" / "status.json").exists()


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_ca_file_that_is_not_a_certificate_is_refused_by_run_and_config_check(tmp_path, command):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    config = config_with(tmp_path, f'host = "127.0.0.1"\ntls = true\nca_file = "{ca}"')
    args = ["run", "--config", config] if command == "run" else ["config", "check", config]
    result = run_smartbin(*args, timeout=60)
    assert_one_line_error(result, "mqtt: cannot set up TLS with ca_file", "check that they are PEM files")


def test_a_broker_that_is_not_there_never_stops_the_sorting(tmp_path):
    config = config_with(tmp_path, f'host = "127.0.0.1"\nport = {closed_port()}\nbin_id = "t1"')
    state = tmp_path / "sim"
    result = run_smartbin(
        "simulate", "--fast", "--json", "--config", config, "--state-dir", state, timeout=120
    )
    assert result.returncode == 0, result.stderr
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(items) == 18 and all(i["compartment"] or i["reason"] == "unmapped" for i in items)
    warnings = [line for line in result.stderr.splitlines() if "cannot connect" in line]
    assert len(warnings) == 1 and "items keep being sorted" in warnings[0]  # said once, not per retry
    # the 18 events never left: counted as dropped when the daemon stopped (they are in the event log)
    mqtt = json.loads((state / "status.json").read_text())["observers"]["mqtt"]
    assert (mqtt["connected"], mqtt["sent"], mqtt["dropped"], mqtt["topics"]) == (
        False,
        0,
        18,
        "smartbin/t1-sim",
    )


def test_forget_without_a_broker_in_the_config_says_what_to_set(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[lid]\npin = 17\n")
    result = run_smartbin("mqtt", "forget", "--config", config, timeout=60)
    assert_one_line_error(result, f"no MQTT broker in {config}; set mqtt.host")


def test_forget_with_a_broker_that_is_not_there_removes_nothing_in_one_line(tmp_path):
    port = closed_port()
    config = config_with(tmp_path, f'host = "127.0.0.1"\nport = {port}')
    result = run_smartbin("mqtt", "forget", "--config", config, timeout=60)
    assert_one_line_error(
        result,
        f"cannot reach the MQTT broker mqtt://127.0.0.1:{port}: connection refused",
        f"is the broker running, on port {port}?",
        "(nothing was removed)",
    )


def test_forget_refuses_a_bin_id_that_is_not_one(tmp_path):
    result = run_smartbin("mqtt", "forget", "--bin-id", "Kitchen Bin", timeout=60)
    assert_one_line_error(result, "mqtt forget: argument --bin-id: expected an id of a-z, 0-9, _ and -")


def test_forget_refused_by_the_broker_says_why(tmp_path):
    mosquitto = Path("/usr/sbin/mosquitto")
    if not mosquitto.is_file():
        missing("mosquitto is not installed (apt install mosquitto)", "MOSQUITTO")
    port = closed_port()
    passwords = tmp_path / "passwords"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "bin", "right"], check=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nallow_anonymous false\npassword_file {passwords}\n"
        + (
            "user root\n" if os.geteuid() == 0 else ""
        )  # root's mosquitto would drop to a user who cannot read tmp_path
    )
    broker = subprocess.Popen([str(mosquitto), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        (tmp_path / "pw").write_text("wrong\n")
        config = config_with(
            tmp_path, f'host = "127.0.0.1"\nport = {port}\nusername = "bin"\npassword_file = "pw"'
        )
        for _ in range(100):  # until the broker listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        result = run_smartbin("mqtt", "forget", "--config", config, timeout=60)
    finally:
        broker.terminate()
        broker.wait(10)
    assert_one_line_error(result, "refused the connection: Not authorized", "(nothing was removed)")
