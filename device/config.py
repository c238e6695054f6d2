"""The bin's configuration: one TOML file, validated before anything touches hardware.

Every key has a default, and the defaults run the hardware-free simulation (mock pins, the
folder camera on the bundled sample photos, the bundled default model). The schema is the
frozen dataclasses below, validated by pydantic: each key's type, range and meaning are
declared once, beside its default; a check that spans keys (a GPIO pin used twice, an angle
outside its servo's range) is a validator on the class that holds those keys. A key the schema
does not know, or a value of the wrong kind, is refused in one line with its key path::

    config.toml: servos.chute.pin: expected an integer GPIO pin 0-27, got 'x'

A file with several mistakes gets the first one (fix, check again): wrong values table by table
in the order of :class:`Config`'s fields, then unknown keys. :func:`check_paths` adds what
only the file system can tell (a state directory that is a file, a folder camera without
photos); ``smartbin config check`` runs both.

A new section is a frozen dataclass of annotated fields (each with the ``description`` that
error messages quote) plus one field on :class:`Config`; unknown keys, messages and the test
that docs/device.md and the example name every key follow from it. Pins it uses go through
:func:`_pins_used_once` from a validator on its field.
docs/device.md lists every key; ``smartbin config example`` prints a commented file.
"""

import dataclasses
import os
import re
import socket
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from .errors import CameraError, ConfigError, os_error_reason

PIN_FACTORIES = ("mock", "lgpio", "rpigpio", "pigpio", "native")
CAMERA_KINDS = ("picamera2", "opencv", "folder")
CROP_MODES = ("off", "item")
LID_EDGES = ("pressed", "released")
NO_COMPARTMENT = "none"  # a label mapped to this does not move the servos
SYSTEM_CONFIG = Path("/etc/smartbin/config.toml")
DATA_DIR = Path(__file__).resolve().parent / "data"
EXAMPLE_CONFIG = DATA_DIR / "config.example.toml"

# Every table refuses keys it does not know.
_TABLE = ConfigDict(extra="forbid")
# dataclasses.field metadata of a field the program sets, never the file (a servo's name, the
# file's own path).
_NOT_IN_FILE = {"in_file": False}


def default_state_dir() -> Path:
    """systemd's ``StateDirectory=`` when set, else the XDG state directory of the user."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "smartbin"


def default_config_path() -> Path | None:
    """The file ``smartbin run/status/events`` read without ``--config``.

    ``$SMARTBIN_CONFIG``, else /etc/smartbin/config.toml when it exists, else None (the
    built-in defaults).
    """
    env = os.environ.get("SMARTBIN_CONFIG")
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


# --- value types: what each key accepts, and how an error says what was expected ---------


def _invalid(message: str, *key: str, at: tuple[str, ...] | None = None) -> PydanticCustomError:
    """A cross-field check's error: ``message`` is the whole text after the key path; ``key``
    continues the path from where the validator sits (e.g. a servo's ``max_pulse_ms``), or
    ``at`` gives the whole path."""
    return PydanticCustomError("smartbin", "{message}", {"message": message, "key": key, "at": at})


def _int(lo: int, hi: int, expected: str) -> Any:
    return Annotated[int, Field(strict=True, ge=lo, le=hi, description=expected)]


def _float(lo: float, hi: float, expected: str) -> Any:
    # strict: true or false is not a number; an integer is (TOML's 60 for 60.0).
    return Annotated[float, Field(strict=True, ge=lo, le=hi, allow_inf_nan=False, description=expected)]


def _choice(options: tuple[str, ...], expected: str | None = None) -> Any:
    return Annotated[Literal[options], Field(description=expected or f"one of {', '.join(options)}")]


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path taken from the config file's folder (``base``)."""
    path = path.expanduser()
    base = (info.context or {}).get("base")
    return base / path if base is not None and not path.is_absolute() else path


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):  # a copy of a validated config (dataclasses.replace)
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("not a path")
    return _resolve(Path(value), info)


def _optional_path(value: Any, info: ValidationInfo) -> Path | None:
    return None if value == "" or value is None else _path(value, info)


def _camera_source(value: Any) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, str | int | None):
        raise ValueError("not a camera source")
    return None if value == "" else value


def _control_value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise ValueError("not a control value")


Bool = Annotated[bool, Field(strict=True, description="true or false")]
Pin = _int(0, 27, "an integer GPIO pin 0-27")
Angle = _float(-360, 360, "an angle in degrees, -360 to 360")
PulseMs = _float(0.1, 5.0, "a pulse width in ms 0.1-5")
Seconds10 = _float(0, 10, "seconds 0-10")
Seconds30 = _float(0, 30, "seconds 0-30")
Name = Annotated[str, Field(strict=True, pattern=r"\S", description="a compartment name")]
PathValue = Annotated[Path, BeforeValidator(_path), Field(description="a path or ''")]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path), Field(description="a path or ''")]
CameraSource = Annotated[
    str | int | None, BeforeValidator(_camera_source), Field(description="a path, a device index or ''")
]
ControlValue = Annotated[
    Any, BeforeValidator(_control_value), Field(description="a number, true/false or a list of numbers")
]


# --- the schema ----------------------------------------------------------------------------


@dataclass(frozen=True, config=_TABLE)
class GpioConfig:
    pin_factory: _choice(PIN_FACTORIES) = "mock"


@dataclass(frozen=True, config=_TABLE)
class LidConfig:
    pin: Pin = 17
    pull_up: Bool = True
    closed_when: _choice(LID_EDGES, "'pressed' or 'released'") = "pressed"  # the Button edge meaning "closed"
    bounce_ms: _int(0, 5000, "milliseconds 0-5000") = 50
    settle_s: Seconds30 = 0.3


@dataclass(frozen=True, config=_TABLE)
class CameraConfig:
    kind: _choice(CAMERA_KINDS) = "folder"
    source: CameraSource = None
    width: _int(16, 8192, "a width in pixels 16-8192") = 640
    height: _int(16, 8192, "a height in pixels 16-8192") = 480
    retries: _int(0, 20, "a retry count 0-20") = 2
    # libcamera controls by name, e.g. AfMode = 0, LensPosition = 4.0 (picamera2 checks the names)
    controls: Mapping[str, ControlValue] = Field(default_factory=dict)

    @field_validator("source")
    @classmethod
    def _source_fits_kind(cls, source: str | int | None, info: ValidationInfo) -> str | int | None:
        kind = info.data.get("kind")
        if source is None or kind is None:
            return source
        if kind == "folder":
            if isinstance(source, int):
                raise _invalid(f'expected a folder or an image file for kind = "folder", got {source!r}')
            return str(_resolve(Path(source), info))
        if kind == "picamera2" and not (
            (isinstance(source, int) and source >= 0) or (isinstance(source, str) and source.isdigit())
        ):
            raise _invalid(
                f"expected a camera number such as 0 for kind = \"picamera2\" (or ''), got {source!r}"
            )
        if kind == "opencv" and (source.strip() == "" if isinstance(source, str) else source < 0):
            raise _invalid(
                f'expected a device index 0 or more, /dev/videoN, a video file or a URL for kind = "opencv", got {source!r}'
            )
        return source

    @field_validator("controls")
    @classmethod
    def _controls_for_the_pi_camera(cls, controls: Mapping[str, Any], info: ValidationInfo) -> Mapping:
        kind = info.data.get("kind")
        if controls and kind is not None and kind != "picamera2":
            raise _invalid(f'libcamera controls apply to kind = "picamera2" only, not {kind!r}')
        return controls


@dataclass(frozen=True, config=_TABLE)
class ClassifierConfig:
    model: OptionalPath = None
    threads: _int(1, 64, "a thread count 1-64") = 2
    frames: _int(1, 50, "a frame count 1-50") = 1
    # "item": the model sees the item's box (from the empty check) plus a margin, not the whole frame
    crop: _choice(CROP_MODES, "'off' or 'item'") = "item"


@dataclass(frozen=True, config=_TABLE)
class ServoConfig:
    name: str = dataclasses.field(metadata=_NOT_IN_FILE)  # the NAME of its [servos.NAME] table
    pin: Pin  # required: no default pin for a servo
    min_pulse_ms: PulseMs = 0.5
    max_pulse_ms: PulseMs = 2.5
    min_angle: Angle = -90.0
    max_angle: Angle = 90.0
    home: Angle = 0.0

    def reaches(self, angle: float) -> bool:
        return min(self.min_angle, self.max_angle) <= angle <= max(self.min_angle, self.max_angle)

    def out_of_range(self, angle: float, *key: str) -> PydanticCustomError:
        return _invalid(
            f"expected an angle between {self.min_angle} and {self.max_angle}, got {angle!r}", *key
        )

    @model_validator(mode="after")
    def _consistent(self) -> "ServoConfig":
        if self.min_pulse_ms >= self.max_pulse_ms:
            raise _invalid(
                f"expected more than min_pulse_ms ({self.min_pulse_ms}), got {self.max_pulse_ms}",
                "max_pulse_ms",
            )
        if self.min_angle == self.max_angle:
            raise _invalid(f"expected an angle different from min_angle, got {self.max_angle}", "max_angle")
        if not self.reaches(self.home):
            raise self.out_of_range(self.home, "home")
        return self


def _named_tables(value: Any) -> Any:
    """[servos.NAME] tables, in file order, as servos that carry their NAME."""
    if isinstance(value, tuple):  # a copy of a validated config (dataclasses.replace)
        return value
    if not isinstance(value, dict) or not value:
        raise ValueError("not a table of servo tables")
    for name, table in value.items():
        if isinstance(table, dict) and "name" in table:
            raise PydanticCustomError("unknown_key", "unknown key", {"key": (name, "name")})
    return tuple(
        {"name": name, **table} if isinstance(table, dict) else table for name, table in value.items()
    )


DEFAULT_SERVOS = (ServoConfig("chute", pin=12), ServoConfig("flap", pin=13))
DEFAULT_LABELS = {"can": "can", "glass": "glass", "plastic": "plastic", "empty": NO_COMPARTMENT}
# General waste the default model knows: the rest (fallback) compartment, whatever it is called.
REST_LABELS = ("cardboard", "paper", "trash")


def default_labels(fallback: str) -> dict[str, str]:
    """The default ``[sorting.labels]``: each recyclable to its own compartment, the rest to ``fallback``."""
    return {**DEFAULT_LABELS, **dict.fromkeys(REST_LABELS, fallback)}


def _default_compartments() -> dict[str, dict[str, float]]:
    # A chute turns to one of four compartments, then a flap drops the item into it.
    return {
        "can": {"chute": -60.0, "flap": 60.0},
        "glass": {"chute": -20.0, "flap": 60.0},
        "plastic": {"chute": 20.0, "flap": 60.0},
        "other": {"chute": 60.0, "flap": 60.0},
    }


@dataclass(frozen=True, config=_TABLE)
class SortingConfig:
    # None: each label's threshold from the model's manifest (chosen for purity when it was
    # converted), else DEFAULT_THRESHOLD; a number here applies to every label.
    threshold: Annotated[_float(0, 1, "a confidence 0-1") | None, Field(description="a confidence 0-1")] = (
        None
    )
    thresholds: Mapping[str, _float(0, 1, "a confidence 0-1")] = Field(default_factory=dict)  # per label
    fallback: Name = "other"
    travel_s: Seconds10 = 0.4
    hold_s: Seconds30 = 0.8
    detach_when_idle: Bool = True
    labels: Mapping[str, Annotated[str, Field(strict=True, description="a compartment name or 'none'")]] = (
        Field(default_factory=dict)  # empty: see Config.sorting
    )


def _under_state_dir(name: str) -> Any:
    return lambda fields: fields["state_dir"] / name


@dataclass(frozen=True, config=_TABLE)
class PathsConfig:
    state_dir: PathValue = Field(default_factory=default_state_dir)
    models_dir: PathValue = Field(default_factory=_under_state_dir("models"))
    events_db: PathValue = Field(default_factory=_under_state_dir("events.db"))
    images_dir: PathValue = Field(default_factory=_under_state_dir("images"))

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data


@dataclass(frozen=True, config=_TABLE)
class ImagesConfig:
    save: Bool = False
    max_count: _int(1, 10_000_000, "a count 1-10000000") = 500
    max_mb: _float(0.1, 1_000_000, "megabytes, 0.1 to 1000000") = 100.0


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


@dataclass(frozen=True, config=_TABLE)
class MqttConfig:
    host: Annotated[str, Field(strict=True, description="a host name or address, or '' (no MQTT)")] = ""
    port: _int(1, 65535, "a TCP port 1-65535") = 1883
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
    qos: _int(0, 2, "an MQTT QoS 0, 1 or 2") = 1
    photo: Bool = False
    queue_size: _int(1, 1_000_000, "a message count 1-1000000") = 1000

    @model_validator(mode="after")
    def _consistent(self) -> "MqttConfig":
        host = self.host
        if host and host != host.strip():
            raise _invalid("has spaces; give a host name or address, or '' (no MQTT)", "host")
        if "://" in host:
            raise _invalid(
                f"give the host alone, without {host.split('://')[0]}:// (tls = true for mqtts)", "host"
            )
        if host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit():  # (an IPv6 address has more)
            raise _invalid("give the host alone and its port as port = N", "host")
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise _invalid("missing; a client certificate needs both cert_file and key_file", missing)
        if not self.tls:
            for key in ("ca_file", "cert_file"):
                if getattr(self, key) is not None:
                    raise _invalid(
                        "applies with tls = true only; set tls = true (the usual port is 8883)", key
                    )
        if self.password_file is not None and not self.username:
            raise _invalid("missing; a password_file needs a username", "username")
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
OptionalPin = Annotated[int | None, Field(strict=True, ge=0, le=27, description="an integer GPIO pin 0-27")]
WHEN_FULL = ("fallback", "hold")
# What the lid's LED shows after an item (and may beep for); "sorted" is per compartment.
OUTCOMES = ("sorted", "unsure", "empty", "full", "fault")


@dataclass(frozen=True, config=_TABLE)
class FillConfig:
    """An HC-SR04 ultrasonic sensor looking down into one compartment."""

    echo: Pin  # required, like trigger and the two distances: no sensible default
    trigger: Pin
    empty_cm: _float(2, 400, "a distance in cm 2-400")  # sensor to the bottom of the empty compartment
    full_cm: _float(2, 400, "a distance in cm 2-400")  # sensor to the top of a brim-full compartment
    full_percent: _float(1, 100, "a percentage 1-100") = 90.0
    when_full: _choice(WHEN_FULL, "'fallback' or 'hold'") = "fallback"
    samples: _int(1, 25, "a reading count 1-25") = 5  # pings per reading; their median counts

    @model_validator(mode="after")
    def _consistent(self) -> "FillConfig":
        if self.full_cm >= self.empty_cm:
            raise _invalid(
                f"expected less than empty_cm ({self.empty_cm}): the sensor looks down, so a fuller "
                f"compartment is nearer; got {self.full_cm}",
                "full_cm",
            )
        return self


@dataclass(frozen=True, config=_TABLE)
class FeedbackConfig:
    """An RGB LED (or three LEDs) and a buzzer at the lid; no pins: no feedback."""

    red: OptionalPin = None
    green: OptionalPin = None
    blue: OptionalPin = None
    active_high: Bool = True  # false for a common-anode RGB LED
    pwm: Bool = True  # false for three plain LEDs: a colour's channel is on from 0.5
    buzzer: OptionalPin = None
    beep: tuple[_choice(OUTCOMES), ...] = ("unsure", "full")
    beep_s: _float(0.01, 2, "seconds 0.01-2") = 0.1
    show_s: _float(0, 60, "seconds 0-60") = 2.0  # an item's colour, then back to ready (or full)
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


@dataclass(frozen=True, config=_TABLE)
class EmptyConfig:
    """The empty check against the reference of ``smartbin calibrate`` (no reference: no check)."""

    threshold: _int(1, 255, "a difference level 1-255") = 15  # how much a pixel must change to count
    min_area: _float(0.0001, 1, "a share of the picture 0.0001-1") = 0.003  # less changed: empty
    refresh_s: _float(0, 86400, "seconds 0-86400") = 600.0  # idle frames follow slow drift; 0: never


@dataclass(frozen=True, config=_TABLE)
class LightConfig:
    """A light in the chamber, on for the settle and the capture; no pin: no light."""

    pin: OptionalPin = None
    active_high: Bool = True


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


@dataclass(frozen=True, config=_TABLE)
class WebConfig:
    """The review page and JSON API (device/web/); no address: no web server."""

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


def _pins(
    lid: Any,
    servos: Any = (),
    fill: Mapping[str, FillConfig] | None = None,
    feedback: Any = None,
    light: Any = None,
):
    """Every GPIO pin of the bin as (key path, pin), in file order (sections not yet valid left out)."""
    pins = [("lid.pin", lid.pin)] if lid else []
    pins += [(f"servos.{s.name}.pin", s.pin) for s in servos or ()]
    for name, sensor in (fill or {}).items():
        pins += [(f"fill.{name}.echo", sensor.echo), (f"fill.{name}.trigger", sensor.trigger)]
    if feedback is not None:
        pins += [
            (f"feedback.{key}", getattr(feedback, key))
            for key in ("red", "green", "blue", "buzzer")
            if getattr(feedback, key) is not None
        ]
    if light is not None and light.pin is not None:
        pins.append(("light.pin", light.pin))
    return pins


def _pins_used_once(pins: list[tuple[str, int]]) -> None:
    """No GPIO pin serves two things; ``pins`` are (key path, pin) in file order."""
    users: dict[int, str] = {}
    for key, pin in pins:
        if pin in users:
            raise _invalid(f"GPIO {pin} is already used by {users[pin]}", at=tuple(key.split(".")))
        users[pin] = key


@dataclass(frozen=True, config=_TABLE)
class Config:
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    lid: LidConfig = Field(default_factory=LidConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    # Servos move in this order and go home in reverse.
    servos: Annotated[
        tuple[ServoConfig, ...],
        BeforeValidator(_named_tables),
        Field(description="one table per servo, such as [servos.chute]"),
    ] = Field(default=DEFAULT_SERVOS, validate_default=True)
    # compartment -> servo -> angle; a servo not named stays home. Not given (or empty): the
    # defaults, which name the default servos.
    compartments: Mapping[str, Mapping[str, Angle]] = Field(default_factory=dict, validate_default=True)
    # sorting.labels not given (or empty): the defaults, which name the default compartments.
    sorting: SortingConfig = Field(default_factory=SortingConfig, validate_default=True)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    # [fill.NAME]: a fill sensor in compartment NAME; none: no fill levels
    fill: Mapping[str, FillConfig] = Field(default_factory=dict)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    empty: EmptyConfig = Field(default_factory=EmptyConfig)
    light: LightConfig = Field(default_factory=LightConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    # the file it came from; None for the built-in defaults
    source: Path | None = dataclasses.field(default=None, metadata=_NOT_IN_FILE)

    def servo(self, name: str) -> ServoConfig:
        return next(s for s in self.servos if s.name == name)

    def pins(self) -> list[tuple[str, int]]:
        """Every GPIO pin the bin uses, as (key path, pin)."""
        return _pins(self.lid, self.servos, self.fill, self.feedback, self.light)

    @field_validator("servos")
    @classmethod
    def _servo_pins(cls, servos: tuple[ServoConfig, ...], info: ValidationInfo) -> tuple[ServoConfig, ...]:
        lid = info.data.get("lid")
        _pins_used_once(
            [*([("lid.pin", lid.pin)] if lid else []), *((f"servos.{s.name}.pin", s.pin) for s in servos)]
        )
        return servos

    @field_validator("compartments")
    @classmethod
    def _compartments_move_servos(cls, compartments: Mapping, info: ValidationInfo) -> Mapping:
        if "servos" not in info.data:  # the servos are wrong: that is the error to report
            return compartments
        servos = {s.name: s for s in info.data["servos"]}
        if not compartments:
            compartments = _default_compartments()
            if not all(name in servos for angles in compartments.values() for name in angles):
                raise _invalid("missing; with your own [servos] give [compartments.NAME] tables too")
        home = tuple(s.home for s in servos.values())
        seen: dict[tuple[float, ...], str] = {}
        for name, angles in compartments.items():
            if name == NO_COMPARTMENT:
                raise _invalid(f"'{NO_COMPARTMENT}' means no move; name the compartment otherwise", name)
            for servo_name, angle in angles.items():
                if servo_name not in servos:
                    raise _invalid(f"no servo of that name (servos: {', '.join(servos)})", name, servo_name)
                if not servos[servo_name].reaches(angle):
                    raise servos[servo_name].out_of_range(angle, name, servo_name)
            pose = tuple(angles.get(s.name, s.home) for s in servos.values())
            if pose == home:
                raise _invalid(
                    "every servo stays home, so an item sent there would not move; "
                    "give at least one servo an angle other than its home",
                    name,
                )
            if pose in seen:
                raise _invalid(
                    f"the same angles as compartment {seen[pose]}, so both would fill one place; "
                    "give each compartment its own angles",
                    name,
                )
            seen[pose] = name
        return compartments

    @field_validator("sorting")
    @classmethod
    def _sorting_names_compartments(cls, sorting: SortingConfig, info: ValidationInfo) -> SortingConfig:
        compartments = info.data.get("compartments")
        if compartments is None:
            return sorting
        if sorting.fallback not in compartments:
            raise _invalid(
                f"expected one of the compartments ({', '.join(compartments)}), got {sorting.fallback!r}",
                "fallback",
            )
        if not sorting.labels:
            if not set(DEFAULT_LABELS.values()) <= {*compartments, NO_COMPARTMENT}:
                raise _invalid('missing; map each label to a compartment, e.g. can = "can"', "labels")
            sorting = dataclasses.replace(sorting, labels=default_labels(sorting.fallback))
        options = ", ".join([*compartments, NO_COMPARTMENT])
        for label, target in sorting.labels.items():
            if target not in compartments and target != NO_COMPARTMENT:
                raise _invalid(f"expected a compartment ({options}), got {target!r}", "labels", label)
        return sorting

    @field_validator("mqtt")
    @classmethod
    def _photo_is_a_saved_one(cls, mqtt: MqttConfig, info: ValidationInfo) -> MqttConfig:
        images = info.data.get("images")
        if mqtt.photo and images is not None and not images.save:
            raise _invalid("needs images.save = true (the photo sent is the one the bin saves)", "photo")
        return mqtt

    @field_validator("fill")
    @classmethod
    def _fill_names_compartments(cls, fill: Mapping[str, FillConfig], info: ValidationInfo) -> Mapping:
        compartments = info.data.get("compartments")
        for name in fill:
            if compartments is not None and name not in compartments:
                raise _invalid(f"no compartment of that name (compartments: {', '.join(compartments)})", name)
        _pins_used_once(_pins(info.data.get("lid"), info.data.get("servos"), fill))
        return fill

    @field_validator("feedback")
    @classmethod
    def _feedback_has_pins(cls, feedback: FeedbackConfig, info: ValidationInfo) -> FeedbackConfig:
        led = [key for key in ("red", "green", "blue") if getattr(feedback, key) is not None]
        if led and len(led) < 3:
            missing = next(key for key in ("red", "green", "blue") if key not in led)
            raise _invalid("missing; give red, green and blue together (an RGB LED or three LEDs)", missing)
        if not feedback.enabled and feedback != FeedbackConfig():  # an empty [feedback] is no feedback
            raise _invalid("no pins; give red, green and blue (an RGB LED or three LEDs), a buzzer, or both")
        compartments = info.data.get("compartments")
        for name in feedback.compartments:
            if compartments is not None and name not in compartments:
                raise _invalid(
                    f"no compartment of that name (compartments: {', '.join(compartments)})",
                    "compartments",
                    name,
                )
        _pins_used_once(_pins(info.data.get("lid"), info.data.get("servos"), info.data.get("fill"), feedback))
        return feedback

    @field_validator("light")
    @classmethod
    def _light_pin_used_once(cls, light: LightConfig, info: ValidationInfo) -> LightConfig:
        data = info.data
        _pins_used_once(
            _pins(data.get("lid"), data.get("servos"), data.get("fill"), data.get("feedback"), light)
        )
        return light

    @field_validator("source")
    @classmethod
    def _not_in_the_file(cls, source: Path | None, info: ValidationInfo) -> Path | None:
        if info.context is not None:  # parse_config: the file said "source = ..."
            raise PydanticCustomError("unknown_key", "unknown key")
        return source


_CONFIG = TypeAdapter(Config)


# --- one line per error ----------------------------------------------------------------------


def file_keys(tp: Any) -> list[str]:
    """The keys a table of the file may have, in order (a servo's name is not one of them);
    for :class:`Config`, the file's sections."""
    return [f.name for f in dataclasses.fields(tp) if f.metadata.get("in_file", True)]


def _table_fields(tp: Any) -> dict[str, FieldInfo]:
    own = set(file_keys(tp))
    return {name: info for name, info in tp.__pydantic_fields__.items() if name in own}


def _declared(loc: tuple[Any, ...]) -> tuple[Any, str | None]:
    """The schema's type at ``loc`` and the description of what it expects there."""
    tp: Any = Config
    description = None
    for item in loc:
        if dataclasses.is_dataclass(tp):
            info = _table_fields(tp).get(item)
            if info is None:
                return None, None
            tp, description = info.annotation, info.description
        elif get_origin(tp) in (Mapping, dict, tuple):
            tp = get_args(tp)[-1 if get_origin(tp) is not tuple else 0]
            description = None
            if get_origin(tp) is Annotated:
                described = [m.description for m in tp.__metadata__ if isinstance(m, FieldInfo)]
                tp, description = get_args(tp)[0], next(iter(described), None)
        else:
            return None, None
    return tp, description


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """``servos.chute.pin`` from pydantic's ``('servos', 0, 'pin')``: a position in a table of
    tables is the name of its table in the file."""
    parts = []
    for item in loc:
        if isinstance(item, int) and isinstance(data, dict) and 0 <= item < len(data):
            item = list(data)[item]
        parts.append(str(item))
        data = data.get(item) if isinstance(data, dict) else None
    return ".".join(parts)


def _one_line(exc: ValidationError, where: str, data: Mapping[str, Any]) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    context = error.get("ctx") or {}
    loc = context.get("at") or (*error["loc"], *context.get("key", ()))
    kind = error["type"]
    if kind == "smartbin":
        problem = context["message"]
    elif kind in ("unexpected_keyword_argument", "extra_forbidden", "unknown_key"):
        table, _ = _declared(loc[:-1])
        known = ", ".join(sorted(_table_fields(table))) if dataclasses.is_dataclass(table) else ""
        problem = f"unknown key (known here: {known or 'none'})"
    else:
        tp, description = _declared(loc)
        if description is None and (dataclasses.is_dataclass(tp) or get_origin(tp) in (Mapping, dict)):
            description = "a table"
        elif description is None and get_origin(tp) is tuple:
            description = "a list"
            inner = get_args(tp)[0]
            if get_origin(inner) is Annotated:
                described = [m.description for m in inner.__metadata__ if isinstance(m, FieldInfo)]
                description += f", each {described[0]}" if described else ""
        if kind in ("missing", "missing_argument", "missing_keyword_argument"):
            problem = f"missing; expected {description}"
        else:
            problem = f"expected {description or 'another value'}, got {error['input']!r}"
    return ConfigError(f"{where}: {_key_path(loc, data)}: {problem}")


def parse_config(data: Mapping[str, Any], *, where: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed TOML document; ``base`` resolves relative paths (the file's folder)."""
    data = dict(data)
    try:
        return _CONFIG.validate_python(data, context={"base": base or Path.cwd()})
    except ValidationError as exc:
        raise _one_line(exc, where, data) from None


def load_config(path: Path | str | None) -> Config:
    """Read and validate a config file; ``None`` gives the built-in defaults (the simulation)."""
    if path is None:
        return parse_config({}, where="defaults")
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; 'smartbin config example' prints one") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({os_error_reason(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: cannot read the config file (not UTF-8 text); write it as UTF-8 TOML"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = parse_config(data, where=path.name, base=path.resolve().parent)
    return dataclasses.replace(config, source=path)


# --- what only the file system can tell ----------------------------------------------------


def _nearest(path: Path) -> tuple[Path, bool | None]:
    """The nearest existing path at or above ``path``, and whether it is a folder (None: unknown)."""
    for candidate in (path, *path.parents):
        try:
            mode = candidate.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return candidate, None
        return candidate, stat.S_ISDIR(mode)
    return path, None


def _unwritable(folder: Path) -> str | None:
    """Why this user cannot add files to ``folder``, or None when it can."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY else "permission denied"
    try:  # os.access lets root past everything; /sys and /proc still take no new folder
        os.rmdir(tempfile.mkdtemp(prefix=".smartbin-check-", dir=folder))
    except OSError as exc:
        return os_error_reason(exc)
    return None


def check_paths(config: Config) -> list[str]:
    """Check what only the file system can tell, for ``smartbin config check``.

    Raises :class:`ConfigError` for a path that cannot work whoever runs the bin: a file where
    a folder must be (or above it), a folder where the event log must be, a folder camera
    without photos, a video file that is not there. Returns warnings for folders this user
    cannot create or write (the daemon may run as another user; one that cannot write there
    sorts without records). A camera device that is absent (no /dev/video0) is hardware, not
    config: a warning.
    """
    where = config.source.name if config.source else "config"
    p = config.paths
    folders = [
        ("paths.state_dir", p.state_dir, True),
        ("paths.models_dir", p.models_dir, False),  # written by 'smartbin deploy', read by the bin
        ("paths.events_db", p.events_db.parent, True),
    ]
    if config.images.save:
        folders.append(("paths.images_dir", p.images_dir, True))
    warnings = []
    for key, folder, written in folders:
        found, is_dir = _nearest(folder)
        if is_dir is False:
            problem = (
                f"{folder} is a file, not a folder"
                if found == folder
                else f"cannot create {folder}: {found} is a file"
            )
            raise ConfigError(f"{where}: {key}: {problem}; choose another path")
        reason = None if is_dir is None or not written else _unwritable(found)
        if is_dir is None or reason:
            warnings.append(
                f"{where}: {key}: this user (uid {os.getuid()}) cannot "
                f"{'look into' if is_dir is None else 'write in' if found == folder else 'create'} "
                f"{folder} ({reason or f'{found} cannot be read'}); "
                "a daemon that cannot write there sorts without records"
            )
    if p.events_db.is_dir():
        raise ConfigError(
            f"{where}: paths.events_db: {p.events_db} is a folder; give the event log's file, "
            f"e.g. {p.events_db / 'events.db'}"
        )
    warnings += _check_camera_source(config.camera, where)
    if config.mqtt.host:
        _check_mqtt_files(config.mqtt, where)
    return warnings


def _check_camera_source(camera: CameraConfig, where: str) -> list[str]:
    if camera.kind == "folder":
        from .cameras import SAMPLES_DIR, list_images

        try:
            list_images(SAMPLES_DIR if camera.source is None else camera.source)
        except CameraError as exc:
            raise ConfigError(f"{where}: camera.source: {exc}") from None
    elif camera.kind == "opencv" and isinstance(camera.source, str) and not camera.source.isdigit():
        source = Path(camera.source).expanduser()
        if camera.source.startswith(("rtsp:", "http:", "https:")) or source.exists():
            return []
        if camera.source.startswith("/dev/"):
            return [f"{where}: camera.source: {source} is not there (is the camera connected?)"]
        raise ConfigError(
            f"{where}: camera.source: video file {source} does not exist; "
            "give a camera index, /dev/videoN or a video file"
        )
    return []


MQTT_FILES = ("ca_file", "cert_file", "key_file", "password_file")


def mqtt_file_problem(path: Path) -> str | None:
    """Why the MQTT client could not read ``path`` (a CA, certificate, key or password file), or None."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return os_error_reason(exc)
    return None


def _check_mqtt_files(mqtt: MqttConfig, where: str) -> None:
    for key in MQTT_FILES:
        path = getattr(mqtt, key)
        problem = path is not None and mqtt_file_problem(path)
        if problem:
            raise ConfigError(f"{where}: mqtt.{key}: cannot read {path}: {problem}")
