"""Find a TFLite interpreter without importing TensorFlow unless nothing else is there."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import SmartbinError

# Lightest first: LiteRT is the maintained runtime, tflite-runtime stopped at 2.14,
# and full TensorFlow is a last resort on a desktop.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")

_cached: tuple[str, Any] | None = None


def interpreter_class() -> tuple[str, Any]:
    """Return ``(module name, Interpreter class)`` of the first runtime that imports."""
    global _cached
    if _cached is None:
        for name in INTERPRETER_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            _cached = (name, module.Interpreter)
            break
        else:
            raise SmartbinError(
                "no TFLite runtime found; install one with 'pip install ai-edge-litert' "
                "(or 'pip install smartbin[device]')"
            )
    return _cached
