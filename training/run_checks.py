"""What ``smartbin train`` checks before TensorFlow starts and :func:`.train.train` checks again.

Only the standard library at module level, so the CLI imports it cheaply.
"""

from __future__ import annotations

from pathlib import Path

STRATEGIES = ("default", "mirrored", "multi_worker")


def check_run_out(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` this run may not replace or cannot create, before any work is done."""
    from smartbin.device.errors import SmartbinError
    from smartbin.device.files import check_out_dir

    check_out_dir(out, "--out")
    if out.exists() and not overwrite:
        raise SmartbinError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not (out / "run.json").is_file() and any(out.iterdir()):
        raise SmartbinError(
            f"{out} is not a run directory and not empty; --overwrite replaces only runs, choose another --out"
        )
