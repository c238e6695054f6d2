"""Lay out one split of a training run as photo sets, so ``smartbin evaluate`` can measure a bundle on
exactly the photos the model did not train on::

    .venv/bin/python scripts/split_as_folders.py RUN_DIR test OUT
    smartbin evaluate BUNDLE OUT/* --out eval/

writes ``OUT/<photo set>/<class>/<photo>`` as symbolic links to the photos of that split
(``splits.csv``), one photo set per folder of ``run.json``'s ``data_dirs``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("split", choices=("train", "val", "test"))
    parser.add_argument("out", type=Path, help="a new folder")
    args = parser.parse_args()
    sets = [Path(p) for p in json.loads((args.run_dir / "run.json").read_text(encoding="utf-8"))["data_dirs"]]
    args.out.mkdir(parents=True)
    count = 0
    with open(args.run_dir / "splits.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] != args.split:
                continue
            path = Path(row["path"])
            source = next((s for s in sets if path.is_relative_to(s)), path.parent.parent)
            link = args.out / source.name / row["label"] / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
            count += 1
    print(f"linked {count} {args.split} photos under {args.out}")


if __name__ == "__main__":
    main()
