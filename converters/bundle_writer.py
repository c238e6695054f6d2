"""Write a model bundle directory (the format :mod:`smartbin.device.vision.bundle` reads)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from smartbin.device.errors import BundleError
from smartbin.device.files import publish_dir
from smartbin.device.vision.bundle import (
    FORMAT_VERSION,
    LABELS_NAME,
    MANIFEST_NAME,
    InputSpec,
    file_sha256,
    is_safe_name,
    load_bundle,
)

MODEL_NAME = "model.tflite"


def write_bundle(
    out: str | Path,
    tflite_model: bytes,
    *,
    name: str,
    labels: Sequence[str],
    input_spec: InputSpec,
    quantization: str,
    output_kind: str = "probabilities",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    sorting: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write the bundle to ``out`` atomically: a half-written bundle never appears there.

    The version defaults to ``<name>-<UTC date>-<first 8 hex of the model's sha256>``, so the
    same model always gets the same version and deploying it twice is recognisably a no-op.
    """
    out = Path(out)
    if out.exists() and not (out / MANIFEST_NAME).exists():
        raise BundleError(f"{out}: exists and is not a model bundle; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model_path = staging / MODEL_NAME
        model_path.write_bytes(tflite_model)
        sha256 = file_sha256(model_path)
        today = dt.datetime.now(dt.UTC)
        version = version or f"{name}-{today:%Y%m%d}-{sha256[:8]}"
        if not is_safe_name(version):
            raise BundleError(f"version {version!r} may hold only letters, digits, '.', '-' and '_'")
        manifest = {
            "format": FORMAT_VERSION,
            "name": name,
            "version": version,
            "created": today.isoformat(timespec="seconds"),
            "model_file": MODEL_NAME,
            "sha256": sha256,
            "size_bytes": len(tflite_model),
            "labels": list(labels),
            "input": asdict(input_spec),
            "output": {"kind": output_kind},
            "quantization": quantization,
            "training": training or {},
            "metrics": metrics or {},
            **({"sorting": sorting} if sorting else {}),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (staging / LABELS_NAME).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        load_bundle(staging)  # never publish a bundle the device would refuse
        publish_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
