"""Publishing a directory so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import shutil
from pathlib import Path


def publish_dir(staging: Path, out: Path) -> None:
    """Move a fully written ``staging`` directory to ``out``, replacing what was there.

    Both must be on one file system. An existing ``out`` is renamed aside first and removed only
    once the new one is in place, so a crash in between leaves ``.<name>.old`` rather than nothing.
    """
    staging.chmod(0o755)
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)
