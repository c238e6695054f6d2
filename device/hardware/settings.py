"""The hardware's config tables: ``[gpio]``, ``[lid]``, ``[camera]``, ``[servos.NAME]``,
``[fill.NAME]`` and ``[light]``, and what only the file system can tell about a camera source."""

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from ..schema import (
    NOT_IN_FILE,
    TABLE,
    Angle,
    Bool,
    OptionalPin,
    Pin,
    PulseMs,
    Seconds30,
    choice,
    float_in,
    int_in,
    invalid,
    resolve_path,
)

PIN_FACTORIES = ("mock", "lgpio", "rpigpio", "pigpio", "native")

CAMERA_KINDS = ("picamera2", "opencv", "folder")

LID_EDGES = ("pressed", "released")


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


CameraSource = Annotated[
    str | int | None, BeforeValidator(_camera_source), Field(description="a path, a device index or ''")
]

ControlValue = Annotated[
    Any, BeforeValidator(_control_value), Field(description="a number, true/false or a list of numbers")
]


@dataclass(frozen=True, config=TABLE)
class GpioConfig:
    pin_factory: choice(PIN_FACTORIES) = "mock"


@dataclass(frozen=True, config=TABLE)
class LidConfig:
    pin: Pin = 17
    pull_up: Bool = True
    closed_when: choice(LID_EDGES, "'pressed' or 'released'") = "pressed"  # the Button edge meaning "closed"
    bounce_ms: int_in(0, 5000, "milliseconds 0-5000") = 50
    settle_s: Seconds30 = 0.3


@dataclass(frozen=True, config=TABLE)
class CameraConfig:
    kind: choice(CAMERA_KINDS) = "folder"
    source: CameraSource = None
    width: int_in(16, 8192, "a width in pixels 16-8192") = 640
    height: int_in(16, 8192, "a height in pixels 16-8192") = 480
    retries: int_in(0, 20, "a retry count 0-20") = 2
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
                raise invalid(f'expected a folder or an image file for kind = "folder", got {source!r}')
            return str(resolve_path(Path(source), info))
        if kind == "picamera2" and not (
            (isinstance(source, int) and source >= 0) or (isinstance(source, str) and source.isdigit())
        ):
            raise invalid(
                f"expected a camera number such as 0 for kind = \"picamera2\" (or ''), got {source!r}"
            )
        if kind == "opencv" and (source.strip() == "" if isinstance(source, str) else source < 0):
            raise invalid(
                f'expected a device index 0 or more, /dev/videoN, a video file or a URL for kind = "opencv", got {source!r}'
            )
        return source

    @field_validator("controls")
    @classmethod
    def _controls_for_the_pi_camera(cls, controls: Mapping[str, Any], info: ValidationInfo) -> Mapping:
        kind = info.data.get("kind")
        if controls and kind is not None and kind != "picamera2":
            raise invalid(f'libcamera controls apply to kind = "picamera2" only, not {kind!r}')
        return controls


@dataclass(frozen=True, config=TABLE)
class ServoConfig:
    name: str = dataclasses.field(metadata=NOT_IN_FILE)  # the NAME of its [servos.NAME] table
    pin: Pin  # required: no default pin for a servo
    min_pulse_ms: PulseMs = 0.5
    max_pulse_ms: PulseMs = 2.5
    min_angle: Angle = -90.0
    max_angle: Angle = 90.0
    home: Angle = 0.0

    def reaches(self, angle: float) -> bool:
        return min(self.min_angle, self.max_angle) <= angle <= max(self.min_angle, self.max_angle)

    def out_of_range(self, angle: float, *key: str) -> PydanticCustomError:
        return invalid(
            f"expected an angle between {self.min_angle} and {self.max_angle}, got {angle!r}", *key
        )

    @model_validator(mode="after")
    def _consistent(self) -> "ServoConfig":
        if self.min_pulse_ms >= self.max_pulse_ms:
            raise invalid(
                f"expected more than min_pulse_ms ({self.min_pulse_ms}), got {self.max_pulse_ms}",
                "max_pulse_ms",
            )
        if self.min_angle == self.max_angle:
            raise invalid(f"expected an angle different from min_angle, got {self.max_angle}", "max_angle")
        if not self.reaches(self.home):
            raise self.out_of_range(self.home, "home")
        return self


def named_tables(value: Any) -> Any:
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

WHEN_FULL = ("fallback", "hold")


@dataclass(frozen=True, config=TABLE)
class FillConfig:
    """An HC-SR04 ultrasonic sensor looking down into one compartment."""

    echo: Pin  # required, like trigger and the two distances: no sensible default
    trigger: Pin
    empty_cm: float_in(2, 400, "a distance in cm 2-400")  # sensor to the bottom of the empty compartment
    full_cm: float_in(2, 400, "a distance in cm 2-400")  # sensor to the top of a brim-full compartment
    full_percent: float_in(1, 100, "a percentage 1-100") = 90.0
    when_full: choice(WHEN_FULL, "'fallback' or 'hold'") = "fallback"
    samples: int_in(1, 25, "a reading count 1-25") = 5  # pings per reading; their median counts

    @model_validator(mode="after")
    def _consistent(self) -> "FillConfig":
        if self.full_cm >= self.empty_cm:
            raise invalid(
                f"expected less than empty_cm ({self.empty_cm}): the sensor looks down, so a fuller "
                f"compartment is nearer; got {self.full_cm}",
                "full_cm",
            )
        return self


@dataclass(frozen=True, config=TABLE)
class LightConfig:
    """A light in the chamber, on for the settle and the capture; no pin: no light."""

    pin: OptionalPin = None
    active_high: Bool = True
