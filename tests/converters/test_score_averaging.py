"""scripts/score_averaging.py: runs alone, with mirror images and averaged, counted in photos per set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .conftest import LABELS, SIZE, load_script


def _always_glass(run_dir: Path) -> Path:
    """Replace a run's model by one that calls every photo glass, whatever it shows."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(len(LABELS), activation="softmax")
    outputs = dense(pooled)
    dense.set_weights([np.zeros((3, len(LABELS))), np.array([0.0, 20.0, 0.0])])
    keras.Model(inputs, outputs).save(run_dir / "model.keras")
    return run_dir


def _wrong_counts(line: str) -> list[int]:
    return [int(n) for n in re.findall(r"\((\d+) wrong\)", line)]


def test_averaged_scores_decide_the_ensembles_lines(tiny_run, run_copy, capsys):
    glass = _always_glass(run_copy)
    assert load_script("score_averaging").main([str(tiny_run), str(glass), "--mirror", "lr+ud"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    # The tiny run gets every photo right, alone and with its mirror images; "always glass" misses the
    # cans and plastics: 6 of 9 val photos and 10 of 15 test photos. Its certainty outweighs the tiny
    # run's, so the average of the two misses the same photos.
    assert _wrong_counts(lines["tiny"]) == [0, 0] and _wrong_counts(lines["tiny + mirror lr+ud"]) == [0, 0]
    assert _wrong_counts(lines["run"]) == [6, 10]
    assert _wrong_counts(lines["all runs averaged"]) == [6, 10]
    assert "val: " in lines["all runs averaged"] and "33.3 % (10 wrong)" in lines["all runs + mirror lr+ud"]


def test_runs_with_other_labels_are_refused_in_one_line(tiny_run, run_copy, capsys):
    info = json.loads((run_copy / "run.json").read_text())
    info["labels"] = ["glass", "can", "plastic"]  # the same classes, other score columns
    (run_copy / "run.json").write_text(json.dumps(info))
    assert load_script("score_averaging").main([str(tiny_run), str(run_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("score_averaging: error: ")
    assert "has labels ['glass', 'can', 'plastic']" in err[0]
