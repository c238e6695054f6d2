"""A real Mosquitto broker on 127.0.0.1 for the MQTT tests, and a subscriber that keeps what it hears.

The broker runs Debian's /usr/sbin/mosquitto on a free port with a minimal config (no
persistence unless a test restarts it and wants sessions kept; anonymous, a password file, or
TLS with client certificates). Without mosquitto the tests are skipped, unless
SMARTBIN_REQUIRE_MOSQUITTO=1 (CI), where that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from smartbin.deploy.loopback import free_port

from ...required import missing

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
WAIT_S = 10.0


def need_mosquitto() -> None:
    if not Path(MOSQUITTO).is_file():
        missing("mosquitto is not installed (apt install mosquitto)", "MOSQUITTO")


@dataclass
class Certificates:
    """A test authority, a certificate for 127.0.0.1 and a client certificate (openssl, EC P-256)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, folder: Path) -> Certificates:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{folder}/ca.key",
            "-out",
            f"{folder}/ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=smartbin test CA",
        )
        (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        for name, cn in (("server", "127.0.0.1"), ("client", "bin")):
            openssl(
                "req",
                *ec,
                "-keyout",
                f"{folder}/{name}.key",
                "-out",
                f"{folder}/{name}.csr",
                "-subj",
                f"/CN={cn}",
            )
            openssl(
                "x509", "-req", "-in", f"{folder}/{name}.csr", "-CA", f"{folder}/ca.pem", "-CAkey", f"{folder}/ca.key",
                "-CAcreateserial", "-out", f"{folder}/{name}.pem", "-days", "1", "-extfile", f"{folder}/san.cnf",
            )  # fmt: skip
        return cls(
            folder / "ca.pem",
            folder / "server.pem",
            folder / "server.key",
            folder / "client.pem",
            folder / "client.key",
        )


class Broker:
    """``start()``/``stop()`` the same broker (same port) as often as a test likes."""

    def __init__(
        self,
        folder: Path,
        *,
        users: dict[str, str] | None = None,
        tls: Certificates | None = None,
        persistence: bool = False,
    ) -> None:
        """``persistence``: sessions (subscriptions and their queued messages) survive a restart."""
        self.port = free_port()
        self.folder = folder
        self.users = users or {}
        self.config = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr"]
        lines += (
            [f"persistence true\npersistence_location {folder}/"] if persistence else ["persistence false"]
        )
        if os.geteuid() == 0:  # mosquitto started by root drops to user mosquitto, who cannot read tmp_path
            lines.append("user root")
        if users:
            passwords = folder / "passwords"
            passwords.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:  # clients must show a certificate signed by the same authority
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                "require_certificate true",
            ]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT_S)
        self.proc = None


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Subscriber:
    """A paho client that keeps every message on ``topics`` (``#`` by default), in order."""

    port: int
    topics: tuple[str, ...] = ("#",)
    username: str | None = None
    password: str | None = None
    session: str | None = None  # a client id whose session outlives disconnections (QoS 1 kept)
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        if self.session:
            self.client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=self.session, clean_session=False
            )
            self.client.reconnect_delay_set(0.1, 0.1)
        else:
            self.client = paho.Client(CallbackAPIVersion.VERSION2)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(Message(message.topic, message.payload, message.retain))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, payload: bytes | None = None) -> list[Message]:
        """The first ``count`` messages on ``topic`` (with ``payload``, if given); fails after WAIT_S."""

        def matching() -> list[Message]:
            return [m for m in self.messages if m.topic == topic and payload in (None, m.payload)]

        with self._cond:
            assert self._cond.wait_for(lambda: len(matching()) >= count, WAIT_S), (
                f"{len(matching())} of {count} messages on {topic}; heard: "
                f"{[(m.topic, m.payload[:60]) for m in self.messages]}"
            )
            return matching()[:count]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
