"""The vision wing's config tables: ``[classifier]`` and ``[empty]``."""

from pydantic.dataclasses import dataclass

from ..schema import TABLE, OptionalPath, choice, float_in, int_in

CROP_MODES = ("off", "item")


@dataclass(frozen=True, config=TABLE)
class ClassifierConfig:
    model: OptionalPath = None
    threads: int_in(1, 64, "a thread count 1-64") = 2
    frames: int_in(1, 50, "a frame count 1-50") = 1
    # "item": the model sees the item's box (from the empty check) plus a margin, not the whole frame
    crop: choice(CROP_MODES, "'off' or 'item'") = "item"


@dataclass(frozen=True, config=TABLE)
class EmptyConfig:
    """The empty check against the reference of ``smartbin calibrate`` (no reference: no check)."""

    threshold: int_in(1, 255, "a difference level 1-255") = 15  # how much a pixel must change to count
    min_area: float_in(0.0001, 1, "a share of the picture 0.0001-1") = 0.003  # less changed: empty
    refresh_s: float_in(0, 86400, "seconds 0-86400") = 600.0  # idle frames follow slow drift; 0: never
