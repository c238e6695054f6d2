"""Sub-commands of this area (see smartbin.device.cli): convert, evaluate, export-serving, bundle import.

Only argparse here: TensorFlow and the converters' modules are imported inside the handlers.
"""

import argparse
import json
import logging

from smartbin.device.commands.arguments import given_path, thread_count
from smartbin.device.vision.bundle import RESIZE_MODES

from . import DEFAULT_MAX_WRONG, DEFAULT_MIN_KEPT_OUT, DEFAULT_PURITY, QUANTIZATIONS


def _import_tensorflow() -> None:
    """TensorFlow's start-up lines (oneDNN, CPU features, absl) would bury our report; -v shows them."""
    from smartbin.device.vision.native import import_quietly

    import_quietly("tensorflow")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def _convert(args: argparse.Namespace) -> int:
    from .convert import check_arguments, convert_run
    from .outcomes import SortingTarget, format_outcomes
    from .parity import ParityGateError, by_source_summary
    from .run_dir import load_run

    options = {
        "max_drop": args.max_drop,
        "representative": args.representative,
        "version": args.version,
        "name": args.name,
        "threads": args.threads,
        "target": SortingTarget(
            args.max_wrong / 100, args.min_kept_out / 100, None if args.purity is None else args.purity / 100
        ),
    }
    check_arguments(args.quantize, args.out, **options)  # all of it before TensorFlow's ~10 s start
    load_run(args.run_dir)
    _import_tensorflow()
    try:
        result = convert_run(args.run_dir, args.quantize, args.out, **options)
    except ParityGateError as exc:
        print(exc.report.summary())
        raise
    print(result.parity.summary())
    if len(result.by_source) > 1:
        print(by_source_summary(result.by_source))
    if result.sorting:
        chosen = result.sorting["chosen_on"]
        shown = ", ".join(f"{label} {t:.2f}" for label, t in result.sorting["thresholds"].items())
        print(
            f"thresholds for {options['target'].describe()} on {chosen['images']} {chosen['split']} images: {shown}"
        )
        if options["target"].purity is None:
            print(format_outcomes(result.sorting["figures"]))
    print(
        f"wrote {result.bundle} (version {result.version}, {result.size_bytes:,} bytes, "
        f"converted in {result.seconds:.1f} s)"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from smartbin.device.config import load_config

    from .evaluate import evaluate_bundle, format_report

    config = load_config(args.config) if args.config is not None else None
    report = evaluate_bundle(
        args.bundle, args.data_dirs, threads=args.threads, out_dir=args.out, config=config
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _export_serving(args: argparse.Namespace) -> int:
    from smartbin.device.files import check_out_dir

    from .run_dir import load_run
    from .serving import export_serving

    check_out_dir(args.out, "--out")  # all of it before TensorFlow's ~10 s start
    load_run(args.run_dir)
    _import_tensorflow()

    out = export_serving(args.run_dir, args.out)
    print(f"wrote SavedModel {out} (signature 'serving_default': image_bytes -> scores, labels, label)")
    return 0


def _bundle_import(args: argparse.Namespace) -> int:
    from smartbin.device.config import default_config_path, load_config

    from .model_import import import_model, next_steps

    config = load_config(args.config if args.config is not None else default_config_path())
    result = import_model(
        args.model,
        args.labels,
        args.out,
        input_range=tuple(args.input_range) if args.input_range else None,
        resize=args.resize,
        name=args.name,
    )
    print(result.summary())
    print(next_steps(result.bundle, config))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    p = subparsers.add_parser(
        "convert",
        help="convert a training run to a TFLite model bundle, gated on test accuracy",
        description="Convert RUN_DIR/model.keras to TFLite, check it against the Keras model on the "
        "run's test split with the device's classifier, and write the bundle only if it passes.",
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", type=given_path, help="a directory written by 'smartbin train'"
    )
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="int8", help="default: %(default)s")
    p.add_argument(
        "--out",
        required=True,
        metavar="BUNDLE",
        type=given_path,
        help="bundle directory to write (replaced if it is one)",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="fail when TFLite test accuracy is more than this many points below Keras (default: %(default)s)",
    )
    p.add_argument(
        "--representative",
        type=int,
        default=150,
        metavar="N",
        help="training images to calibrate int8 on (default: %(default)s)",
    )
    p.add_argument("--version", help="bundle version (default: <name>-<date>-<sha256[:8]>)")
    p.add_argument("--name", help="bundle name (default: <backbone>-<quantisation>)")
    p.add_argument(
        "--threads", type=thread_count, metavar="N", help="interpreter threads for the parity check"
    )
    p.add_argument(
        "--max-wrong",
        type=float,
        default=100 * DEFAULT_MAX_WRONG,
        metavar="PERCENT",
        help="choose the thresholds that send the most recyclables of the validation photos into their "
        "own compartment while at most this share goes into a wrong one (default: %(default)g)",
    )
    p.add_argument(
        "--min-kept-out",
        type=float,
        default=100 * DEFAULT_MIN_KEPT_OUT,
        metavar="PERCENT",
        help="...and at least this share of the rest stays out of the recycling (default: %(default)g)",
    )
    p.add_argument(
        "--purity",
        type=float,
        metavar="PERCENT",
        help="instead, choose each label's threshold on its own, so that what the bin sorts by it is "
        f"this pure (the older rule; e.g. {100 * DEFAULT_PURITY:g})",
    )
    p.set_defaults(func=_convert, left_on_interrupt="{out} left as it was")

    p = subparsers.add_parser(
        "evaluate",
        help="measure a bundle on a folder of labelled photos (accuracy, where they land, latency)",
        description="Run BUNDLE with the device runtime on DATA_DIR/<class>/* photos: accuracy, "
        "per-class precision/recall/F1, a confusion matrix PNG, inference latency p50/p95, and where "
        "each class lands under a bin's config (own, wrong recycling or rest compartment; each "
        "compartment's purity; a threshold sweep PNG). Classes the model has no label for count as "
        "general waste.",
    )
    p.add_argument("bundle", metavar="BUNDLE", type=given_path, help="a model bundle directory")
    p.add_argument(
        "data_dirs",
        metavar="DATA_DIR",
        type=given_path,
        nargs="+",
        help="one sub-folder of photos per label; several folders (photo sets) are also reported one by one",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--threads", type=thread_count, metavar="N", help="interpreter threads (default: the runtime's)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=given_path,
        help="where to write metrics.json and the PNGs (default: ./evaluation-<version>)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        type=given_path,
        help="the bin's config, for where photos land (labels, fallback, thresholds; default: the defaults)",
    )
    p.set_defaults(func=_evaluate, left_on_interrupt="nothing was written")

    p = subparsers.add_parser(
        "export-serving",
        help="export a training run as a TF SavedModel that takes encoded images (TF Serving)",
        description="Write a SavedModel whose serving signature takes a batch of JPEG/PNG bytes "
        "(REST: {'instances': [{'b64': ...}]}) and returns scores and labels.",
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", type=given_path, help="a directory written by 'smartbin train'"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        type=given_path,
        help="SavedModel directory to create (must not exist)",
    )
    p.set_defaults(func=_export_serving, left_on_interrupt="{out} was not created")

    p = subparsers.add_parser("bundle", help="model bundles made elsewhere")
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "import",
        help="turn a Teachable Machine or Model Maker .tflite and its labels into a verified bundle",
        description="Read MODEL's input size, dtype and quantisation with the TFLite interpreter, "
        "check LABELS against its outputs, see on the sample photos, a black and a white frame whether "
        "it outputs probabilities or logits, verify it as a bin would and write the bundle. Needs no "
        "TensorFlow: it runs on a bin too.",
    )
    p.add_argument(
        "model", metavar="MODEL", type=given_path, help="the exported .tflite file (float or quantized)"
    )
    p.add_argument(
        "labels",
        metavar="LABELS",
        type=given_path,
        help="its labels.txt: '0 can' lines (Teachable Machine) or one name per line (Model Maker)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="BUNDLE",
        type=given_path,
        help="bundle directory to write (replaced if it is one)",
    )
    p.add_argument(
        "--input-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="where a float model wants pixels 0..255: -1 1 (the default, Teachable Machine), 0 1 "
        "(Model Maker) or 0 255; a quantized model's own quantisation says it unless this is given",
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default="stretch",
        help="how a frame becomes the model's input size (default: %(default)s)",
    )
    p.add_argument("--name", help="bundle name (default: imported-<quantisation>)")
    p.add_argument(
        "--config",
        metavar="FILE",
        type=given_path,
        help="the bin's config, to say whether it sorts by these labels (default: as 'smartbin run' finds it)",
    )
    p.set_defaults(func=_bundle_import, left_on_interrupt="{out} left as it was")
