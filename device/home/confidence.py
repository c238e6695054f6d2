"""How sure the bin has been lately, per model: the median confidence of the last items each of the
two newest models sorted. A fleet's rollout guard (``smartbin fleet guard``) compares a bin's
median on its new model with its median on the model before, on the same bin's items."""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Any

RECENT_ITEMS = 100  # per model
MODELS_KEPT = 2  # the model running now and the one before it


class RecentConfidence:
    def __init__(self) -> None:
        self._by_model: dict[str, deque[float]] = {}

    def add(self, model_version: str | None, confidence: float | None) -> None:
        """One classified item (an empty chamber or a failed capture has no confidence)."""
        if model_version is None or confidence is None:
            return
        if model_version not in self._by_model:
            self._by_model[model_version] = deque(maxlen=RECENT_ITEMS)
            while len(self._by_model) > MODELS_KEPT:
                del self._by_model[next(iter(self._by_model))]  # the oldest model first seen
        self._by_model[model_version].append(confidence)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{model_version: {"items": n, "median": m}}``, oldest model first."""
        return {
            version: {"items": len(values), "median": round(median(values), 4)}
            for version, values in self._by_model.items()
        }
