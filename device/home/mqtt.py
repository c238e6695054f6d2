"""MQTT for the bin: an observer that publishes items, state and photos, and Home Assistant discovery.

The item cycle never waits for the network. The hooks (called on the daemon's thread) only put
what happened into an inbox; a worker thread of this module keeps the counters and a bounded
queue of item events, and hands messages to paho-mqtt, whose own network thread
(``loop_start``) connects, reconnects with backoff, and writes to the socket. While the broker
is away, item events wait in the queue; once it holds ``queue_size`` of them, the oldest is
dropped and counted. ``state`` and ``photo`` are not queued: only their latest value matters,
and it is sent on reconnection.

Topics and the discovery payload: :mod:`.ha_discovery`. paho-mqtt is imported only when
``[mqtt]`` names a broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ..config import Config
from ..errors import SmartbinError, os_error_reason
from ..records.events import ItemEvent
from ..records.state import now_iso
from .confidence import RecentConfidence
from .ha_discovery import (
    OFFLINE,
    ONLINE,
    Topics,
    discovery_payload,
    event_payload,
    event_type,
    fill_levels,
    sorted_labels,
    update_state,
)
from .observers import QueuedObserver
from .settings import MqttConfig, mqtt_file_problem

log = logging.getLogger(__name__)

STATE_INTERVAL_S = 1.0  # the retained state is published on change, at most this often
STATE_REFRESH_S = 60.0  # and at least this often while connected: its age says the bin still reports
IN_FLIGHT = 100  # events handed to paho and not yet acknowledged, at most
STOP_TIMEOUT_S = 2.0  # on a clean stop: flush the queue and say offline, for at most this long
RECONNECT_DELAY_S = (1, 30)  # paho's backoff: first and longest wait between connection attempts
QUICK_DROP_S = 5.0  # a connection lost sooner than this after it was made, twice running: a clash of ids
KEEPALIVE_S = 30


def broker_url(mqtt: MqttConfig) -> str:
    return f"{'mqtts' if mqtt.tls else 'mqtt'}://{mqtt.host}:{mqtt.port}"


def make_client(mqtt: MqttConfig, client_id: str) -> paho.Client:
    """A paho client with the config's credentials and TLS; one-line :class:`SmartbinError` for
    a file it cannot read."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if mqtt.username:
        password = None
        if mqtt.password_file is not None:
            try:
                password = mqtt.password_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = os_error_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
                raise SmartbinError(f"mqtt.password_file: cannot read {mqtt.password_file}: {why}") from None
        client.username_pw_set(mqtt.username, password)
    if mqtt.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(mqtt, key)
            problem = path is not None and mqtt_file_problem(path)
            if problem:
                raise SmartbinError(f"mqtt.{key}: cannot read {path}: {problem}")
        try:
            client.tls_set(
                ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
                certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
                keyfile=str(mqtt.key_file) if mqtt.key_file else None,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SmartbinError(
                f"mqtt: cannot set up TLS with ca_file {mqtt.ca_file or '(system)'}, cert_file "
                f"{mqtt.cert_file or '(none)'}: {exc}; check that they are PEM files and that the key fits"
            ) from None
    client.reconnect_delay_set(*RECONNECT_DELAY_S)
    return client


class MqttObserver(QueuedObserver):
    """Publishes the bin to an MQTT broker (see the module docstring).

    Three threads meet here, and share nothing but one inbox: the daemon's (the hooks) and
    paho's network thread (its callbacks) only put messages into ``inbox``; the worker thread
    takes them, owns every counter and queue, and alone calls ``client.publish`` (until
    :meth:`stopping` has ended it and says ``offline`` itself).
    """

    name = "mqtt"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.mqtt = config.mqtt
        self.topics = Topics.of(self.mqtt)
        self.labels = sorted_labels(config)
        self.client = make_client(self.mqtt, client_id=f"smartbin-{self.mqtt.bin_id}")
        self.client.will_set(self.topics.availability, OFFLINE, qos=self.mqtt.qos, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._why_not_connected: str | None = None  # paho's thread: the last failed attempt's cause
        self._check_update: Callable[[], None] | None = None  # cmd/update, on a bin with [updates] url
        self.client.reconnect = self._reconnect_noting_why(self.client.reconnect)
        self._worker = threading.Thread(target=self._run, name="smartbin-mqtt", daemon=True)

        # the worker's alone (status() only reads them)
        self.connected = False
        self.since = now_iso()
        self.last_error: str | None = None
        self._connected_at = 0.0  # monotonic
        self._quick_drops = 0  # connections lost within QUICK_DROP_S of being made, in a row
        self.sent = 0
        self.dropped = 0
        self._events: deque[ItemEvent] = deque()  # waiting for the broker
        self._in_flight: deque[Any] = deque()  # paho's MQTTMessageInfo of events handed over
        self._fresh_session = False  # connected and not yet announced (online, discovery)
        self._rediscover = False
        self._state_dirty = False
        self._state_sent_at = -STATE_INTERVAL_S
        self._last_state: dict[str, Any] | None = None
        self._photo: Path | None = None
        self._closing = False
        # what the state is made of
        self._status: Mapping[str, Any] = {}
        self._busy = False
        self._by_label: Counter[str] = Counter()
        self._confidence = RecentConfidence()
        self._by_compartment: dict[str, int] = dict.fromkeys([*config.compartments, "none"], 0)
        self._items = 0
        self._item_errors = 0
        self._last_item: dict[str, Any] | None = None

    # --- observer hooks: the daemon's thread; one put each -----------------------------

    def attach_updates(self, check_now: Callable[[], None]) -> None:
        self._check_update = check_now  # before started(): subscribed to at each connection

    def started(self, status: Mapping[str, Any]) -> None:
        super().started(status)
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()  # paho's network thread: connects, reconnects with backoff
        self._worker.start()
        log.info("MQTT: publishing to %s as %s", broker_url(self.mqtt), self.topics.base)

    def stopping(self) -> None:
        """Flush what is queued, publish ``offline``, disconnect; at most about STOP_TIMEOUT_S."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        if self._worker.is_alive():
            self.inbox.put(("stop",))
            self._worker.join(STOP_TIMEOUT_S / 2 + 0.5)
        if self.connected:
            info = self.client.publish(self.topics.availability, OFFLINE, qos=self.mqtt.qos, retain=True)
            _wait(info, deadline)
        self.client.disconnect()
        self.client.loop_stop()
        left = len(self._events) + sum(_delivered(info, self.mqtt.qos) is None for info in self._in_flight)
        if left:  # the broker away at the end: they are in the event log, not on the broker
            log.warning("MQTT: %d item event(s) not delivered at stop (counted as dropped)", left)
            self.dropped += left

    def status(self) -> dict[str, Any]:
        return {
            "broker": broker_url(self.mqtt),
            "topics": self.topics.base,
            "connected": self.connected,
            "since": self.since,
            "last_error": self.last_error,
            "queued": len(self._events) + len(self._in_flight),
            "queue_size": self.mqtt.queue_size,
            "sent": self.sent,
            "dropped": self.dropped,
        }

    # --- paho's callbacks: paho's network thread; one put each --------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._why_not_connected = None  # the socket is open: an earlier attempt's cause is old news
        if reason.is_failure:
            self.inbox.put(("down", f"the broker refused the connection: {reason}", True))
            return
        if self.mqtt.discovery:
            client.subscribe(self.topics.ha_status, qos=self.mqtt.qos)
        if self._check_update is not None:
            client.subscribe(self.topics.update_command, qos=self.mqtt.qos)
        self.inbox.put(("up",))

    def _reconnect_noting_why(self, reconnect: Any) -> Any:
        """paho's loop calls ``reconnect`` and drops the OSError it raises; keep its cause."""

        def noting(*args: Any, **kwargs: Any) -> Any:
            try:
                return reconnect(*args, **kwargs)
            except OSError as exc:
                self._why_not_connected = connect_error(exc, self.mqtt)
                raise

        return noting

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        why = f": {self._why_not_connected}" if self._why_not_connected else ""
        self.inbox.put(("down", f"cannot connect to {broker_url(self.mqtt)}{why}", True))

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.inbox.put(("down", str(reason) if reason.is_failure else None, False))

    def _on_message(self, client: paho.Client, userdata: Any, message: Any) -> None:
        if message.topic == self.topics.ha_status and message.payload == ONLINE.encode():
            self.inbox.put(("ha_online",))  # Home Assistant (re)started: announce the device again
        elif message.topic == self.topics.update_command and self._check_update is not None:
            if message.retain:  # a command left retained would check at every connection
                log.warning(
                    "MQTT: ignored a retained message on %s; publish it without retain", message.topic
                )
                return
            log.info("MQTT: asked to check for an update now")
            self._check_update()  # sets a flag: the check runs on the updater's thread

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self.inbox.put(("published",))

    # --- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        failed = False
        while True:
            try:
                if self._closing:
                    self._flush()
                    return
                self._turn(self._wait_s())
            except Exception:  # a bug here must not end MQTT for good: log once, go on
                if not failed:
                    log.exception("MQTT: the publisher failed (logged once; it goes on)")
                failed = True
                if self._closing:
                    return
                time.sleep(STATE_INTERVAL_S)  # not a busy loop if it fails again at once

    def _turn(self, timeout: float | None) -> None:
        """Take what the inbox holds (waiting up to ``timeout`` for the first), then publish what is due."""
        try:
            self._take(self.inbox.get(timeout=timeout))
            while True:
                self._take(self.inbox.get_nowait())
        except queue.Empty:
            pass
        self._settle_in_flight()
        if self.connected:
            self._publish(self._due())

    def _wait_s(self) -> float | None:
        if not self.connected:
            return None  # until the next message
        every = STATE_INTERVAL_S if self._state_dirty else max(STATE_INTERVAL_S, STATE_REFRESH_S)
        return max(0.0, self._state_sent_at + every - time.monotonic())

    def _take(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "item":
            self._count(message[1], message[2])
        elif kind == "busy":
            self._busy = self._state_dirty = True
        elif kind == "status":
            self._status = message[1]
            self._state_dirty = True
        elif kind == "up":
            self.connected, self.since, self.last_error = True, now_iso(), None
            self._connected_at = time.monotonic()
            self._fresh_session = True
            log.log(
                logging.DEBUG if self._quick_drops > 1 else logging.INFO,
                "MQTT: connected to %s",
                broker_url(self.mqtt),
            )
        elif kind == "down":
            self._down(*message[1:])
        elif kind == "ha_online":
            self._rediscover = self.mqtt.discovery
        elif kind == "stop":
            self._closing = True
            self._busy, self._state_dirty = False, True
        # "published": the in-flight events are settled after every turn

    def _count(self, event: ItemEvent, status: Mapping[str, Any]) -> None:
        if len(self._events) >= self.mqtt.queue_size:
            self._events.popleft()
            self._dropped("the queue is full")
        self._events.append(event)
        self._status = status
        self._busy = False
        self._items += 1
        self._item_errors += event.error is not None
        self._by_label[event.label or "none"] += 1
        self._confidence.add(event.model_version, event.confidence)
        compartment = event.compartment or "none"
        self._by_compartment[compartment] = self._by_compartment.get(compartment, 0) + 1
        self._last_item = {
            "id": event.id,
            "ts": event.ts,
            "event_type": event_type(event, self.labels),
            "label": event.label,
            "confidence": event.confidence,
            "compartment": event.compartment,
            "reason": event.reason,
            "latency_ms": event.latency_ms,
        }
        if self.mqtt.photo and event.image_path:
            self._photo = Path(event.image_path)
        self._state_dirty = True

    def _down(self, error: str | None, attempt: bool) -> None:
        """The link went down: ``attempt``, a connection attempt failed or was refused (``error``
        says why); else paho's disconnection (``error``: its reason, None for our own)."""
        was = self.connected
        if not attempt and error is not None:
            if not was and self.last_error:
                return  # the disconnection after a refusal: the refusal says why
            where = broker_url(self.mqtt)
            error = (
                f"lost the connection to {where} ({error})"
                if was
                else f"{where} closed the connection before accepting it ({error}); check TLS and the client certificate"
            )
            if was:
                quick = time.monotonic() - self._connected_at < QUICK_DROP_S
                self._quick_drops = self._quick_drops + 1 if quick else 0
            if self._quick_drops > 1:  # a broker drops a client when another connects with its id
                error += (
                    f"; it drops within {QUICK_DROP_S:g} s of every connection: another client may use "
                    f"the id smartbin-{self.mqtt.bin_id}, so give each bin its own mqtt.bin_id"
                )
        self.connected = False
        if was:
            self.since = now_iso()
        # once per outage, not at every retry; twice for a connection that keeps dropping
        if error and (self._quick_drops <= 2 if was else error != self.last_error):
            log.warning(
                "MQTT: %s; retrying with backoff, items keep being sorted and up to %d events are kept",
                error,
                self.mqtt.queue_size,
            )
        self.last_error = error

    def _due(self) -> list[tuple[str, Any, bool, bool]]:
        """What to publish now, as (topic, payload, retain, is an event)."""
        out: list[tuple[str, Any, bool, bool]] = []
        if self._fresh_session:
            self._fresh_session = False
            out.append((self.topics.availability, ONLINE, True, False))
            self._rediscover = self.mqtt.discovery
            self._state_dirty = True
            self._last_state = None
        if self._rediscover:
            self._rediscover = False
            out.append((self.topics.discovery, json.dumps(discovery_payload(self.config)), True, False))
        refresh = time.monotonic() >= self._state_sent_at + STATE_REFRESH_S
        if (self._state_dirty or refresh) and (
            self._closing or time.monotonic() >= self._state_sent_at + STATE_INTERVAL_S
        ):
            self._state_dirty = False
            state = self._state()
            if state != self._last_state or refresh:  # uptime alone is no change, but a refresh is due
                self._last_state = state
                self._state_sent_at = time.monotonic()
                out.append(
                    (self.topics.state, json.dumps({**state, "uptime_s": self._uptime_s()}), True, False)
                )
        if self._photo is not None:
            out.append((self.topics.photo, self._photo, True, False))
            self._photo = None
        while self._events and len(self._in_flight) + sum(e for *_, e in out) < IN_FLIGHT:
            event = self._events.popleft()
            out.append((self.topics.event, json.dumps(event_payload(event, self.labels)), False, True))
        return out

    def _publish(self, messages: list[tuple[str, Any, bool, bool]]) -> None:
        for topic, payload, retain, is_event in messages:
            if isinstance(payload, Path):
                try:
                    payload = payload.read_bytes()
                except OSError as exc:  # pruned or unreadable: the next item brings another
                    log.debug("MQTT: photo %s not sent: %s", payload, exc)
                    continue
            info = self.client.publish(topic, payload, qos=self.mqtt.qos, retain=retain)
            if is_event:
                self._in_flight.append(info)

    def _settle_in_flight(self) -> None:
        """Count the events paho has delivered, or lost (QoS 0 with a dropped connection)."""
        while self._in_flight:
            delivered = _delivered(self._in_flight[0], self.mqtt.qos)
            if delivered is None:
                break
            self._in_flight.popleft()
            if delivered:
                self.sent += 1
            else:
                self._dropped("the connection dropped while they were sent at QoS 0")

    def _flush(self) -> None:
        """On a clean stop: the last state, and up to half of STOP_TIMEOUT_S for the queued events."""
        deadline = time.monotonic() + STOP_TIMEOUT_S / 2
        while self.connected and (self._state_dirty or self._events or self._in_flight):
            if time.monotonic() >= deadline:
                return
            self._turn(0.05)

    def _dropped(self, why: str) -> None:
        if self.dropped == 0:
            log.warning("MQTT: dropping item events (%s); counted in 'smartbin status'", why)
        self.dropped += 1

    def _state(self) -> dict[str, Any]:
        status = self._status
        return {
            "model_version": status.get("model_version"),
            "started": status.get("started"),
            "state": status.get("state"),
            "busy": self._busy,
            "items": self._items,
            "by_label": dict(self._by_label),
            "by_compartment": dict(self._by_compartment),
            "last_item": self._last_item,
            "fill": fill_levels(self.config, status.get("fill")),
            "update": update_state(status.get("update")),
            "confidence": self._confidence.summary(),
            "faults": {
                "items_with_errors": self._item_errors,
                "warnings": list(status.get("warnings") or []),
            },
        }

    def _uptime_s(self) -> float | None:
        started = self._status.get("started")
        if not started:
            return None
        return round((datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds(), 1)


def _wait(info: Any, deadline: float) -> None:
    with contextlib.suppress(RuntimeError, ValueError):  # not connected: the last will says offline
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))


def _delivered(info: Any, qos: int) -> bool | None:
    """True: the broker has the message; False: lost; None: still on its way."""
    if qos > 0:
        # paho keeps a QoS 1/2 message until the broker acknowledges it, across reconnections;
        # its rc stays MQTT_ERR_NO_CONN if it was handed over while the link was down, so
        # is_published() would raise: read the flag it sets on the acknowledgement.
        return True if info._published else None
    if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        return False  # never queued
    if not info._published:
        return None
    return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS  # MQTT_ERR_CONN_LOST: lost on reconnection


def connect_error(exc: OSError, mqtt: MqttConfig) -> str:
    """Why a connection to the broker could not be made, and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"its certificate was not accepted ({exc.verify_message}); check ca_file and that host "
            "is a name the certificate holds"
        )
    # a plain port answers a TLS hello by closing (an EOF within TLS) or resetting the connection
    if mqtt.tls and isinstance(exc, ssl.SSLError | ConnectionResetError | ConnectionAbortedError):
        why = (exc.reason or str(exc)) if isinstance(exc, ssl.SSLError) else os_error_reason(exc)
        return f"TLS failed ({why}); is port {mqtt.port} the broker's TLS port?"
    if isinstance(exc, socket.gaierror):
        return f"unknown host {mqtt.host} ({exc.strerror})"
    return f"{os_error_reason(exc)}; is the broker running, on port {mqtt.port}?"


def broker_of(config: Config) -> MqttConfig:
    """The config's ``[mqtt]``; one-line :class:`SmartbinError` when it names no broker."""
    if not config.mqtt.host:
        where = config.source or "the built-in defaults"
        raise SmartbinError(f"no MQTT broker in {where}; set mqtt.host (and the rest of [mqtt]) first")
    return config.mqtt


def connect(mqtt: MqttConfig, client_id: str, *, timeout: float, unless: str = "") -> paho.Client:
    """A client connected to the broker, its network loop running (``disconnect`` and ``loop_stop``
    it when done); one-line :class:`SmartbinError`, ending with ``unless``, when it cannot connect."""
    client = make_client(mqtt, client_id=client_id)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=KEEPALIVE_S)
    except (OSError, ValueError) as exc:
        why = connect_error(exc, mqtt) if isinstance(exc, OSError) else str(exc)
        raise SmartbinError(f"cannot reach the MQTT broker {broker_url(mqtt)}: {why}{unless}") from None
    client.loop_start()
    if not connected.wait(timeout) or refused:
        client.disconnect()
        client.loop_stop()
        why = (
            f"refused the connection: {refused[0]}"
            if refused
            else f"did not answer in {timeout:.0f} s"
            + ("" if mqtt.tls else f" (if port {mqtt.port} is a TLS port, set tls = true)")
        )
        raise SmartbinError(f"the MQTT broker {broker_url(mqtt)} {why}{unless}")
    return client


def forget(config: Config, *, bin_id: str | None = None, timeout: float = 10.0) -> list[str]:
    """Remove the bin from Home Assistant: empty retained messages on its discovery config and
    its retained topics. Returns the topics cleared; one-line :class:`SmartbinError` otherwise."""
    mqtt = broker_of(config)
    if bin_id is not None:
        from dataclasses import replace

        mqtt = replace(mqtt, bin_id=bin_id)
    topics = Topics.of(mqtt)
    client = connect(mqtt, f"smartbin-{mqtt.bin_id}-forget", timeout=timeout, unless=" (nothing was removed)")
    try:
        cleared = [topics.discovery, topics.state, topics.photo, topics.availability]
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in cleared]
        deadline = time.monotonic() + timeout
        for info in infos:
            _wait(info, deadline)
        if not all(info.is_published() for info in infos):
            raise SmartbinError(
                f"the MQTT broker {broker_url(mqtt)} did not confirm the removal in {timeout:.0f} s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    return cleared
