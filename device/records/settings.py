"""The records wing's config tables: ``[paths]`` and ``[images]``."""

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from ..schema import (
    TABLE,
    Bool,
    PathValue,
    float_in,
    int_in,
)


def default_state_dir() -> Path:
    """systemd's ``StateDirectory=`` when set, else the XDG state directory of the user."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "smartbin"


def _under_state_dir(name: str) -> Any:
    return lambda fields: fields["state_dir"] / name


@dataclass(frozen=True, config=TABLE)
class PathsConfig:
    state_dir: PathValue = Field(default_factory=default_state_dir)
    models_dir: PathValue = Field(default_factory=_under_state_dir("models"))
    events_db: PathValue = Field(default_factory=_under_state_dir("events.db"))
    images_dir: PathValue = Field(default_factory=_under_state_dir("images"))

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data


@dataclass(frozen=True, config=TABLE)
class ImagesConfig:
    save: Bool = False
    max_count: int_in(1, 10_000_000, "a count 1-10000000") = 500
    max_mb: float_in(0.1, 1_000_000, "megabytes, 0.1 to 1000000") = 100.0
