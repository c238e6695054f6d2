"""Which confidence each label needs before the bin sorts an item by it, and where that came from.

An item goes to its label's compartment only when the model's confidence reaches that label's
threshold; below it, the fallback (rest) compartment. The thresholds in force, first found wins:

1. ``[sorting.thresholds] LABEL = x`` in the config (``config``);
2. ``[sorting] threshold = x`` in the config, for every label (``config``);
3. the bundle's manifest, ``sorting.thresholds``: chosen when the model was converted so that the
   most recyclables of the validation photos went into their own compartment while few went into
   a wrong one and the rest stayed out (``model``; ``smartbin convert --max-wrong``);
4. :data:`DEFAULT_THRESHOLD` (``default``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import SortingConfig

DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # "config", "model" or "default"


def model_thresholds(manifest: Mapping[str, Any]) -> dict[str, float]:
    """The per-label thresholds a manifest carries (``sorting.thresholds``); {} for a bundle without."""
    sorting = manifest.get("sorting")
    thresholds = sorting.get("thresholds") if isinstance(sorting, Mapping) else None
    return dict(thresholds) if isinstance(thresholds, Mapping) else {}


def thresholds_in_force(
    labels: tuple[str, ...], manifest: Mapping[str, Any], sorting: SortingConfig
) -> dict[str, Threshold]:
    """Each of a model's labels with the threshold the bin applies to it."""
    from_model = model_thresholds(manifest)
    out = {}
    for label in labels:
        if label in sorting.thresholds:
            out[label] = Threshold(sorting.thresholds[label], "config")
        elif sorting.threshold is not None:
            out[label] = Threshold(sorting.threshold, "config")
        elif label in from_model:
            out[label] = Threshold(float(from_model[label]), "model")
        else:
            out[label] = Threshold(DEFAULT_THRESHOLD, "default")
    return out


def as_status(thresholds: Mapping[str, Threshold]) -> dict[str, dict[str, Any]]:
    """The thresholds as status.json holds them: ``{label: {"value": 0.42, "source": "model"}}``."""
    return {label: {"value": t.value, "source": t.source} for label, t in thresholds.items()}


def describe(thresholds: Mapping[str, Mapping[str, Any]]) -> str:
    """``can 0.42 (model), glass 0.80 (config), ...`` from :func:`as_status`'s form, as status.json,
    ``smartbin status``, ``config check`` and ``evaluate`` show them."""
    return ", ".join(f"{label} {t['value']:.2f} ({t['source']})" for label, t in thresholds.items())
