"""Where an item goes: top-1 label, its label's confidence threshold (device/thresholds.py),
fallback compartment, no-move labels, full compartments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import NO_COMPARTMENT, SortingConfig
from .thresholds import DEFAULT_THRESHOLD
from .vision.chamber import Look
from .vision.classifier import Prediction

# Why an item went where it went (stored with every event).
SORTED = "sorted"  # confident and mapped: its own compartment
LOW_CONFIDENCE = "low_confidence"  # below its label's threshold: the fallback compartment
UNMAPPED = "unmapped"  # a label mapped to "none" (e.g. an empty bin): no move
UNKNOWN_LABEL = "unknown_label"  # a label the config does not mention: the fallback compartment
NO_FRAME = "no_frame"  # nothing could be classified: the fallback compartment
EMPTY = "empty"  # the frame matched the empty reference: no move, no inference
# Recorded at start-up from a saved photo whose event a power cut prevented; where it went is unknown.
UNRECORDED = "unrecorded"
# The frame cannot be trusted (with an empty reference set): "capture:black", "capture:blown" or
# "capture:frozen"; the fallback compartment.
CAPTURE = "capture"
# The compartment an item would have gone to is full (fill sensor); the reason names it, e.g.
# "full:can". FULL: the item went to the fallback compartment instead. HELD: the servos did not
# move (when_full = "hold", or the fallback compartment is full too); the item stays on the lid.
FULL = "full"
HELD = "held"


@dataclass(frozen=True)
class Decision:
    compartment: str | None  # None: the servos do not move
    reason: str


def decide(
    prediction: Prediction | None,
    sorting: SortingConfig,
    thresholds: Mapping[str, float],
    full: Mapping[str, str] | None = None,
    look: Look | None = None,
) -> Decision:
    """The compartment for one item, or None to leave the servos where they are.

    ``thresholds`` gives each label the confidence it needs (:func:`~.thresholds.thresholds_in_force`);
    ``full`` maps each full compartment to its ``when_full`` ("fallback" or "hold"); ``look`` is
    the empty check's verdict on the frame (None: no empty reference).
    """
    if look is not None and look.fault:
        decision = Decision(sorting.fallback, f"{CAPTURE}:{look.fault}")
    elif look is not None and look.empty:
        return Decision(None, EMPTY)
    else:
        decision = _by_label(prediction, sorting, thresholds)
    target = decision.compartment
    if not full or target not in full:
        return decision
    if full[target] == "hold" or target == sorting.fallback or sorting.fallback in full:
        return Decision(None, f"{HELD}:{target}")
    return Decision(sorting.fallback, f"{FULL}:{target}")


def capture_fault(reason: str) -> str | None:
    """The capture fault an event's reason names (``capture:black`` -> ``black``), else None."""
    kind, _, fault = reason.partition(":")
    return fault if kind == CAPTURE and fault else None


def full_compartment(reason: str) -> str | None:
    """The full compartment an event's reason names (``full:can``, ``held:can``), else None."""
    kind, _, compartment = reason.partition(":")
    return compartment if kind in (FULL, HELD) and compartment else None


def _by_label(
    prediction: Prediction | None, sorting: SortingConfig, thresholds: Mapping[str, float]
) -> Decision:
    if prediction is None:
        return Decision(sorting.fallback, NO_FRAME)
    if prediction.confidence < thresholds.get(prediction.label, DEFAULT_THRESHOLD):
        return Decision(sorting.fallback, LOW_CONFIDENCE)
    target = sorting.labels.get(prediction.label)
    if target is None:
        return Decision(sorting.fallback, UNKNOWN_LABEL)
    if target == NO_COMPARTMENT:
        return Decision(None, UNMAPPED)
    return Decision(target, SORTED)
