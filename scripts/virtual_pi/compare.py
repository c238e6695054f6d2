#!/usr/bin/env python3
"""Compare two ``smartbin simulate --json`` runs of the same photos (x86 here, arm64 on the virtual Pi).

    python scripts/virtual_pi/compare.py HERE.jsonl PI.jsonl [--tolerance 0.1]

Items are matched by their photo's path below the samples folder (the two machines install
smartbin in different places). Labels must be identical; every score may differ by at most
the tolerance (XNNPACK's int8 kernels round differently on arm64 and x86: 0.082 at most on the
samples, bookworm under qemu 7.2 with ai-edge-litert 2.3; OpenCV 4.11 or 5.0 here made no
difference). Prints one summary
line with the largest difference; exits 1 with one ``error:`` line when the runs disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_items(path: Path) -> dict[str, dict]:
    """The simulation's items by photo, as ``label/name.jpg`` (the last two path parts)."""
    items = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            items["/".join(Path(item["image"]).parts[-2:])] = item
    return items


def compare(here: dict[str, dict], pi: dict[str, dict], tolerance: float) -> tuple[list[str], str]:
    """Problems (empty when the runs agree) and a summary line."""
    problems = []
    if not here or here.keys() != pi.keys():
        problems.append(f"different photos: here {sorted(here)}, on the Pi {sorted(pi)}")
        return problems, ""
    worst, where, differ = 0.0, "-", 0
    for name in sorted(here):
        a, b = here[name], pi[name]
        if a["label"] != b["label"] or a["error"] or b["error"]:
            differ += 1
            problems.append(f"{name}: {a['label']} here, {b['label']} on the Pi ({a['error'] or b['error']})")
        for label, score in a["scores"].items():
            diff = abs(score - b["scores"].get(label, float("inf")))
            if diff > worst:
                worst, where = diff, f"{label} score of {name}"
    if worst > tolerance:
        problems.append(
            f"largest score difference {worst:.6f} ({where}) is above the tolerance {tolerance:g}"
        )
    same = f"{differ} labels differ" if differ else "labels identical"
    return problems, f"{len(here)} photos: {same}, largest score difference {worst:.6f} ({where})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("here", type=Path)
    parser.add_argument("pi", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.1)
    args = parser.parse_args()
    problems, summary = compare(read_items(args.here), read_items(args.pi), args.tolerance)
    if summary:
        print(summary)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
