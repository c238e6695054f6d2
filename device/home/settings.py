"""The home wing's config tables: ``[mqtt]``, ``[feedback]`` and ``[web]``, and whether the MQTT
client can read the files ``[mqtt]`` names."""

import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from ..errors import ConfigError, os_error_reason
from ..schema import (
    TABLE,
    Bool,
    OptionalPath,
    OptionalPin,
    choice,
    float_in,
    int_in,
    invalid,
)

MAX_BIN_ID = 64  # Home Assistant's entity ids (up to 255) are built from it and a compartment


def default_bin_id() -> str:
    """The host name reduced to ``[a-z0-9_-]`` (``Kitchen.Bin`` -> ``kitchen_bin``)."""
    return re.sub(r"[^a-z0-9_-]+", "_", socket.gethostname().lower()).strip("_")[:MAX_BIN_ID] or "smartbin"


def _topic_prefix(value: Any) -> str:
    """An MQTT topic prefix: levels without wildcards, no empty level, no leading or trailing '/'."""
    if not isinstance(value, str) or not value or "+" in value or "#" in value or "\0" in value:
        raise ValueError("not a topic prefix")
    if value.startswith("$"):  # the broker's own ($SYS): it drops what clients publish there
        raise ValueError("not a topic prefix")
    if any(level == "" or level != level.strip() for level in value.split("/")):
        raise ValueError("not a topic prefix")
    return value


TopicPrefix = Annotated[
    str,
    BeforeValidator(_topic_prefix),
    Field(description="topic levels such as 'smartbin' (no +, #, empty level or leading $)"),
]


@dataclass(frozen=True, config=TABLE)
class MqttConfig:
    host: Annotated[str, Field(strict=True, description="a host name or address, or '' (no MQTT)")] = ""
    port: int_in(1, 65535, "a TCP port 1-65535") = 1883
    tls: Bool = False
    ca_file: OptionalPath = None  # None: the system's certificate authorities
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    username: Annotated[str, Field(strict=True, description="a user name or ''")] = ""
    password_file: OptionalPath = None
    bin_id: Annotated[
        str,
        Field(
            strict=True,
            pattern=rf"^[a-z0-9_-]{{1,{MAX_BIN_ID}}}$",
            description=f"an id of 1-{MAX_BIN_ID} characters a-z, 0-9, _ and -",
        ),
    ] = Field(default_factory=default_bin_id)
    base_topic: TopicPrefix = "smartbin"
    discovery_prefix: TopicPrefix = "homeassistant"
    discovery: Bool = True
    qos: int_in(0, 2, "an MQTT QoS 0, 1 or 2") = 1
    photo: Bool = False
    queue_size: int_in(1, 1_000_000, "a message count 1-1000000") = 1000

    @model_validator(mode="after")
    def _consistent(self) -> "MqttConfig":
        host = self.host
        if host and host != host.strip():
            raise invalid("has spaces; give a host name or address, or '' (no MQTT)", "host")
        if "://" in host:
            raise invalid(
                f"give the host alone, without {host.split('://')[0]}:// (tls = true for mqtts)", "host"
            )
        if host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit():  # (an IPv6 address has more)
            raise invalid("give the host alone and its port as port = N", "host")
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise invalid("missing; a client certificate needs both cert_file and key_file", missing)
        if not self.tls:
            for key in ("ca_file", "cert_file"):
                if getattr(self, key) is not None:
                    raise invalid(
                        "applies with tls = true only; set tls = true (the usual port is 8883)", key
                    )
        if self.password_file is not None and not self.username:
            raise invalid("missing; a password_file needs a username", "username")
        return self


def _colour(value: Any) -> tuple[float, float, float]:
    """``[r, g, b]`` with each 0-1, or ``"#rrggbb"``, as a (r, g, b) tuple of 0-1."""
    if isinstance(value, tuple):  # a copy of a validated config (dataclasses.replace)
        return value
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return tuple(int(value[i : i + 2], 16) / 255 for i in (1, 3, 5))
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in value)
    ):
        return tuple(float(v) for v in value)
    raise ValueError("not a colour")


Colour = Annotated[
    tuple[float, float, float],
    BeforeValidator(_colour),
    Field(description="a colour: [r, g, b] with each 0-1, or '#rrggbb'"),
]

# What the lid's LED shows after an item (and may beep for); "sorted" is per compartment.
OUTCOMES = ("sorted", "unsure", "empty", "full", "fault")


@dataclass(frozen=True, config=TABLE)
class FeedbackConfig:
    """An RGB LED (or three LEDs) and a buzzer at the lid; no pins: no feedback."""

    red: OptionalPin = None
    green: OptionalPin = None
    blue: OptionalPin = None
    active_high: Bool = True  # false for a common-anode RGB LED
    pwm: Bool = True  # false for three plain LEDs: a colour's channel is on from 0.5
    buzzer: OptionalPin = None
    beep: tuple[choice(OUTCOMES), ...] = ("unsure", "full")
    beep_s: float_in(0.01, 2, "seconds 0.01-2") = 0.1
    show_s: float_in(0, 60, "seconds 0-60") = 2.0  # an item's colour, then back to ready (or full)
    ready: Colour = (0.0, 0.2, 0.0)
    busy: Colour = (0.0, 0.0, 1.0)
    sorted: Colour = (0.0, 1.0, 0.0)  # sorted into a compartment not named in [feedback.compartments]
    unsure: Colour = (1.0, 0.5, 0.0)
    empty: Colour = (0.3, 0.3, 0.3)
    full: Colour = (1.0, 0.0, 0.0)
    fault: Colour = (0.6, 0.0, 1.0)
    compartments: Mapping[str, Colour] = Field(default_factory=dict)  # sorted into this compartment

    @property
    def enabled(self) -> bool:
        return self.led is not None or self.buzzer is not None

    @property
    def led(self) -> tuple[int, int, int] | None:
        """The red, green and blue pins, or None without an LED."""
        pins = (self.red, self.green, self.blue)
        return None if None in pins else pins


def _listen(value: Any) -> str:
    """``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:8080``; port 0: any free port), or ''."""
    if not isinstance(value, str):
        raise ValueError("not an address")
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or not host.strip("[]") or " " in host:
        raise ValueError("not an address")
    return value


@dataclass(frozen=True, config=TABLE)
class WebConfig:
    """The review page and JSON API (device/home/web/); no address: no web server."""

    listen: Annotated[
        str,
        BeforeValidator(_listen),
        Field(description="HOST:PORT such as '127.0.0.1:8080' or '0.0.0.0:8080', or '' (no web page)"),
    ] = ""
    token_file: OptionalPath = None  # None: <state_dir>/web-token

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None without a web page."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


MQTT_FILES = ("ca_file", "cert_file", "key_file", "password_file")


def mqtt_file_problem(path: Path) -> str | None:
    """Why the MQTT client could not read ``path`` (a CA, certificate, key or password file), or None."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return os_error_reason(exc)
    return None


def check_mqtt_files(mqtt: MqttConfig, where: str) -> None:
    for key in MQTT_FILES:
        path = getattr(mqtt, key)
        problem = path is not None and mqtt_file_problem(path)
        if problem:
            raise ConfigError(f"{where}: mqtt.{key}: cannot read {path}: {problem}")
