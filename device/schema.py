"""The config schema's building blocks: value types that say what they expect, and the error a
cross-key check raises.

Each wing declares its own tables with these (``hardware/settings.py``, ``vision/settings.py``,
``records/settings.py``, ``home/settings.py``); :mod:`~smartbin.device.config` assembles them
into one :class:`~smartbin.device.config.Config` and turns pydantic's errors into one line with
the key path. A type's ``description`` is the "expected ..." of that line.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

# Every table refuses keys it does not know.
TABLE = ConfigDict(extra="forbid")

# dataclasses.field metadata of a field the program sets, never the file (a servo's name, the
# file's own path).
NOT_IN_FILE = {"in_file": False}


def invalid(message: str, *key: str, at: tuple[str, ...] | None = None) -> PydanticCustomError:
    """A cross-field check's error: ``message`` is the whole text after the key path; ``key``
    continues the path from where the validator sits (e.g. a servo's ``max_pulse_ms``), or
    ``at`` gives the whole path."""
    return PydanticCustomError("smartbin", "{message}", {"message": message, "key": key, "at": at})


def int_in(lo: int, hi: int, expected: str) -> Any:
    return Annotated[int, Field(strict=True, ge=lo, le=hi, description=expected)]


def float_in(lo: float, hi: float, expected: str) -> Any:
    # strict: true or false is not a number; an integer is (TOML's 60 for 60.0).
    return Annotated[float, Field(strict=True, ge=lo, le=hi, allow_inf_nan=False, description=expected)]


def choice(options: tuple[str, ...], expected: str | None = None) -> Any:
    return Annotated[Literal[options], Field(description=expected or f"one of {', '.join(options)}")]


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path taken from the config file's folder (``base``)."""
    path = path.expanduser()
    base = (info.context or {}).get("base")
    return base / path if base is not None and not path.is_absolute() else path


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):  # a copy of a validated config (dataclasses.replace)
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("not a path")
    return resolve_path(Path(value), info)


def _optional_path(value: Any, info: ValidationInfo) -> Path | None:
    return None if value == "" or value is None else _path(value, info)


Bool = Annotated[bool, Field(strict=True, description="true or false")]

Pin = int_in(0, 27, "an integer GPIO pin 0-27")

Angle = float_in(-360, 360, "an angle in degrees, -360 to 360")

PulseMs = float_in(0.1, 5.0, "a pulse width in ms 0.1-5")

Seconds10 = float_in(0, 10, "seconds 0-10")

Seconds30 = float_in(0, 30, "seconds 0-30")

Name = Annotated[str, Field(strict=True, pattern=r"\S", description="a compartment name")]

PathValue = Annotated[Path, BeforeValidator(_path), Field(description="a path or ''")]

OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path), Field(description="a path or ''")]

OptionalPin = Annotated[int | None, Field(strict=True, ge=0, le=27, description="an integer GPIO pin 0-27")]
