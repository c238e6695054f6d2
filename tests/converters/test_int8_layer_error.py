"""scripts/int8_layer_error.py: per-layer int8 error of a run, as the docs use it to explain a lost point."""

from __future__ import annotations

import csv

from .conftest import load_script


def test_lists_every_quantised_layer_worst_first(tiny_run, tmp_path, capsys):
    out = tmp_path / "layers.csv"
    assert (
        load_script("int8_layer_error").main(
            [str(tiny_run), "--representative", "12", "--debug", "6", "--csv", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    rows = list(csv.DictReader(out.open()))
    # The tiny model quantises its convolution and its dense layer (at least); each has a finite error.
    assert len(rows) >= 2 and printed[0].startswith(f"{len(rows)} quantised layers")
    steps = [float(row["rmse_steps"]) for row in rows]
    assert all(0 <= s < 50 for s in steps)
    listed = [float(line.split()[0]) for line in printed[2:]]
    assert listed == sorted(listed, reverse=True) and listed[0] == max(round(s, 2) for s in steps)
