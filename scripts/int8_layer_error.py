#!/usr/bin/env python3
"""Where does int8 lose accuracy? Per-layer quantisation error of a training run, worst layers first.

    python scripts/int8_layer_error.py RUN_DIR [--representative 150] [--debug 64] [--top 15] [--csv OUT]

Converts the run's model as ``smartbin convert --quantize int8`` does (same calibration sample) under
TensorFlow's ``QuantizationDebugger``, which runs the float and the int8 model side by side on test-split
frames and compares every quantised tensor. The table gives each layer's RMSE in quantisation steps
(``rmse/scale``: about 0.29 is pure rounding; much more means the layer's range or weights suit int8
badly) and its largest error relative to the tensor's spread. Needs the ``[train]`` extra.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--representative", type=int, default=150, help="calibration frames (as convert)")
    parser.add_argument("--debug", type=int, default=64, help="test-split frames to compare on")
    parser.add_argument("--top", type=int, default=15, help="layers to print")
    parser.add_argument("--csv", type=Path, help="write every layer's statistics here")
    args = parser.parse_args(argv)

    from smartbin.converters.frames import load_frames, sample_examples
    from smartbin.converters.run_dir import load_keras_model, load_run
    from smartbin.converters.tflite import representative_dataset
    from smartbin.device.errors import SmartbinError

    try:
        run = load_run(args.run_dir)
    except SmartbinError as exc:
        print(f"int8_layer_error: error: {exc}", file=sys.stderr)
        return 1
    import tensorflow as tf  # after the run's checks: TensorFlow takes seconds to start

    spec = run.input_spec("uint8")
    seed = int(run.info.get("seed") or 0)
    calibration = representative_dataset(
        load_frames(sample_examples(run, "train", args.representative, seed=seed), spec)
    )
    debug = representative_dataset(load_frames(sample_examples(run, "test", args.debug, seed=seed), spec))
    model = load_keras_model(run)
    with tempfile.TemporaryDirectory(prefix="smartbin-debug-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug)
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    for row in rows:
        scale = float(row["scale"])
        stddev = float(row["stddev"]) or 1.0
        row["rmse_steps"] = math.sqrt(float(row["mean_squared_error"])) / scale if scale else float("nan")
        row["max_error_per_std"] = float(row["max_abs_error"]) / stddev
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    steps = sorted(r["rmse_steps"] for r in rows)
    print(
        f"{len(rows)} quantised layers; RMSE in steps: median {steps[len(steps) // 2]:.2f}, max {steps[-1]:.2f}"
    )
    print(f"{'rmse/scale':>10} {'max/std':>8}  {'op':<18} tensor")
    for row in sorted(rows, key=lambda r: -r["rmse_steps"])[: args.top]:
        print(
            f"{row['rmse_steps']:10.2f} {row['max_error_per_std']:8.2f}  {row['op_name']:<18} {row['tensor_name']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
