"""Sub-commands of this area (see smartbin.device.cli): ``smartbin train``.

Only argparse here; TensorFlow is imported inside the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "tiny_cnn")  # tiny_cnn: tests and smoke checks only
STRATEGIES = ("default", "mirrored", "multi_worker")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune an ImageNet backbone on DATA_DIR/<class>/*.jpg and write a run directory",
        description="Check the photos, split them by a stable hash of each file name, train a head on the "
        "frozen backbone (phase 1), fine-tune the top of the backbone (phase 2), and write the best Keras "
        "model with reports to RUN_DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data_dir", metavar="DATA_DIR", type=Path, help="one sub-folder of photos per class")
    p.add_argument("--out", metavar="RUN_DIR", type=Path, required=True, help="run directory to write")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace RUN_DIR if it exists (only once the new run succeeds)",
    )
    m = p.add_argument_group("model")
    m.add_argument("--backbone", default="efficientnet_lite0", help=f"one of: {', '.join(BACKBONES)}")
    m.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (Keras downloads them; mobilenet_v2 only), a weights file (.npz for efficientnet_lite0, "
        ".weights.h5 for mobilenet_v2), or 'none' for random weights",
    )
    m.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier (0.35 .. 1.4)")
    m.add_argument("--input-size", type=int, default=224, metavar="N", help="square input size in pixels")
    m.add_argument("--dropout", type=float, default=0.2, help="dropout before the classifier")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument(
        "--head-epochs", type=int, default=30, help="phase 1: epochs of the new head on the frozen base"
    )
    t.add_argument("--head-lr", type=float, default=1e-3, help="phase 1 learning rate")
    t.add_argument(
        "--no-cache-features",
        dest="cache_features",
        action="store_false",
        help="phase 1 on augmented images instead of features cached once (slower)",
    )
    t.add_argument("--fine-tune-epochs", type=int, default=8, help="phase 2 epochs (0: head only)")
    t.add_argument("--fine-tune-lr", type=float, default=1e-4, help="phase 2 learning rate (much smaller)")
    t.add_argument(
        "--unfreeze",
        type=int,
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
    t.add_argument("--patience", type=int, default=4, help="early stopping: epochs without a better val_loss")
    t.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no augmentation of the training split"
    )
    t.add_argument(
        "--no-class-weights", dest="balance", action="store_false", help="do not weight classes by frequency"
    )
    t.add_argument(
        "--seed", type=int, default=1, help="seed for splits' shuffling, augmentation and initial weights"
    )
    t.add_argument("--strategy", default="default", help=f"tf.distribute strategy: {', '.join(STRATEGIES)}")
    t.add_argument("--quiet", action="store_true", help="no Keras progress lines")
    d = p.add_argument_group("data checks")
    d.add_argument("--val-percent", type=float, default=15.0)
    d.add_argument("--test-percent", type=float, default=15.0)
    d.add_argument("--min-images", type=int, default=10, help="fewest usable images a class may have")
    d.add_argument(
        "--min-size", type=int, default=32, help="images smaller than this (pixels, either side) are skipped"
    )
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from smartbin.device.errors import SmartbinError

    if args.backbone not in BACKBONES:
        raise SmartbinError(f"unknown backbone {args.backbone!r}; choose one of {', '.join(BACKBONES)}")
    if args.strategy not in STRATEGIES:
        raise SmartbinError(f"unknown strategy {args.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if args.input_size < 32:
        raise SmartbinError(
            f"--input-size {args.input_size} is too small; use 32 or more (224 for ImageNet weights)"
        )
    if not 0.0 <= args.label_smoothing < 1.0:
        raise SmartbinError(f"--label-smoothing {args.label_smoothing} is out of range; use 0 (off) to 0.3")
    if args.mixup < 0.0:
        raise SmartbinError(f"--mixup {args.mixup} is negative; use 0 (off) or an alpha such as 0.2")

    from .train import TrainOptions, train

    weights = None if args.weights.lower() == "none" else args.weights
    opts = TrainOptions(
        data_dir=args.data_dir,
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
    run_dir = train(opts)
    print(run_dir)
    return 0
