"""Fine-tune an ImageNet backbone on a folder of labelled photos and write a run directory.

Phase 1 trains a new head on the frozen base, optionally on features cached once (retrain.py's
"bottleneck" idea: seconds instead of minutes). Phase 2 unfreezes the top of the base with a much
smaller learning rate; BatchNorm stays frozen (inference mode) throughout, as in the Keras
transfer-learning guide. The run is written to a staging folder and moved into place at the end,
so a failed run never replaces a good one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from smartbin.device import interrupts
from smartbin.device.errors import SmartbinError
from smartbin.device.files import publish_dir
from smartbin.device.vision.bundle import file_sha256

from . import progress, reports
from .backbones import BackboneSpec, build_backbone
from .cutpaste import PasteAugment
from .data import Arrays, class_weights, image_dataset, load_arrays
from .dataset import ScanResult, scan_dataset, write_dataset_report, write_splits_csv
from .keras_progress import EpochBar, predict
from .lite_variants import EFFICIENTNET_LITE
from .pretrained import packaged_weights
from .run_checks import STRATEGIES, check_run_out

log = logging.getLogger(__name__)

MODEL_NAME = "model.keras"
RUN_JSON = "run.json"


@dataclass
class TrainOptions:
    data_dirs: list[Path]  # photo sets, each with one sub-folder per class
    out: Path
    classes: list[str] | None = None  # every label, when a set brings a class no other set has
    backbone: str = "efficientnet_lite0"
    weights: str | None = None  # "imagenet", a file path, or None (random)
    alpha: float = 1.0
    input_size: tuple[int, int] = (224, 224)
    resize: str = "stretch"
    batch_size: int = 32
    head_epochs: int = 30
    head_lr: float = 1e-3
    cache_features: bool = True
    fine_tune_epochs: int = 8
    fine_tune_lr: float = 1e-4
    unfreeze: int = 40
    train_batchnorm: bool = False
    dropout: float = 0.2
    label_smoothing: float = 0.0
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha) whenever training on images (0: off)
    patience: int = 4
    augment: bool = True
    paste_backgrounds: float = 0.0  # probability of pasting a white-board item onto another background
    balance: bool = True
    seed: int = 1
    val_percent: float = 15.0
    test_percent: float = 15.0
    min_images: int = 10
    min_size: int = 32
    strategy: str = "default"
    overwrite: bool = False
    verbose: int = 2  # Keras's lines where no bar is drawn (progress.wanted): 0 silent, 2 one per epoch
    timings: dict[str, float] = field(default_factory=dict)


def train(opts: TrainOptions, scan: ScanResult | None = None) -> Path:
    """Run the whole training and return the run directory.

    ``scan``: the photo sets already scanned with ``opts``' data options (the CLI checks them before
    TensorFlow starts); scanned here when not given.
    """
    out = Path(opts.out).expanduser().resolve()
    check_run_out(out, overwrite=opts.overwrite)
    if opts.strategy not in STRATEGIES:
        raise SmartbinError(f"unknown strategy {opts.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    started = time.monotonic()
    scan = scan or scan_dataset(
        opts.data_dirs,
        classes=opts.classes,
        val_percent=opts.val_percent,
        test_percent=opts.test_percent,
        min_images=opts.min_images,
        min_size=opts.min_size,
    )
    log.info(
        "dataset: %d usable images, %d skipped; per class %s",
        len(scan.items),
        len(scan.skipped),
        scan.counts(),
    )
    for photo_set in scan.sets:
        if scan.missing(photo_set.name):
            log.info("set %s has no photos of: %s", photo_set.name, ", ".join(scan.missing(photo_set.name)))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _run(opts, scan, staging, started)
        publish_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _run(opts: TrainOptions, scan: ScanResult, run_dir: Path, started: float) -> None:
    keras.utils.set_random_seed(opts.seed)
    tf.config.experimental.enable_op_determinism()
    write_dataset_report(scan, run_dir)
    write_splits_csv(scan, run_dir / "splits.csv")

    t = time.monotonic()
    size = tuple(opts.input_size)
    data = {
        s: load_arrays(scan.split(s), scan.labels, size, opts.resize, f"reading {s} photos")
        for s in ("train", "val", "test")
    }
    opts.timings["load_images_s"] = time.monotonic() - t
    n_classes = len(scan.labels)
    weights = class_weights(data["train"].labels, n_classes) if opts.balance else None
    paste = _paste_augment(opts, data["train"])

    strategy = _strategy(opts.strategy)
    with strategy.scope():
        spec = BackboneSpec(opts.backbone, size, opts.weights, opts.alpha)
        base = build_backbone(spec)
        if opts.weights is None:
            _estimate_batchnorm_statistics(base, data["train"], opts.batch_size)
        base.trainable = False
        dropout = keras.layers.Dropout(opts.dropout, name="dropout")
        dense = keras.layers.Dense(n_classes, activation="softmax", name="classifier")
        inputs = keras.Input(shape=(*size, 3), name="pixels")
        outputs = dense(dropout(base(inputs)))  # frozen layers (trainable=False) run in inference mode
        model = keras.Model(inputs, outputs, name=f"smartbin_{opts.backbone}")

    logs = run_dir / "logs"
    history: list[dict[str, Any]] = []
    t = time.monotonic()
    if opts.cache_features:
        history += _train_head_cached(opts, base, dropout, dense, data, weights, strategy, logs, paste)
    else:
        history += _fit(
            opts, model, opts.head_lr, opts.head_epochs, data, weights, strategy, logs, "head", paste=paste
        )
    opts.timings["phase1_s"] = time.monotonic() - t

    checkpoint = run_dir / MODEL_NAME
    model.save(checkpoint)
    if opts.fine_tune_epochs > 0 and opts.unfreeze > 0:
        t = time.monotonic()
        baseline = _val_loss(model, opts, data["val"], strategy)
        unfrozen = _unfreeze_top(base, opts.unfreeze, opts.train_batchnorm)
        log.info(
            "phase 2: fine-tuning the top %d layers of %s (val_loss before %.4f)",
            unfrozen,
            base.name,
            baseline,
        )
        extra = [
            keras.callbacks.ModelCheckpoint(
                checkpoint, monitor="val_loss", save_best_only=True, initial_value_threshold=baseline
            )
        ]
        history += _fit(
            opts,
            model,
            opts.fine_tune_lr,
            opts.fine_tune_epochs,
            data,
            weights,
            strategy,
            logs,
            "fine_tune",
            extra,
            paste=paste,
        )
        opts.timings["phase2_s"] = time.monotonic() - t
    best = keras.models.load_model(checkpoint)

    t = time.monotonic()
    metrics = reports.write_reports(best, data, scan.labels, history, run_dir, opts.batch_size)
    opts.timings["evaluate_s"] = time.monotonic() - t
    opts.timings["total_s"] = time.monotonic() - started
    _write_run_json(opts, scan, run_dir, metrics)
    log.info(
        "test accuracy %.4f (val %.4f); run written in %.0f s",
        metrics["test"]["accuracy"],
        metrics["val"]["accuracy"],
        opts.timings["total_s"],
    )


def _estimate_batchnorm_statistics(base: keras.Model, arrays: Arrays, batch_size: int) -> None:
    """Give a randomly initialised base BatchNorm statistics measured on one batch of training images.

    With the initial statistics (mean 0, variance 1) and BatchNorm frozen, activations of a deep random
    network shrink to ~1e-12 and every image gets the same features; measured ones keep them apart.
    """
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    picks = np.linspace(0, len(arrays.images) - 1, num=min(max(batch_size, 8), len(arrays.images))).astype(
        int
    )
    batch = arrays.images[picks].astype(np.float32)  # spread over the classes (items are sorted by class)
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's statistics
    base(batch, training=True)
    for layer in norms:
        layer.momentum = 0.99


def _paste_augment(opts: TrainOptions, train: Arrays) -> PasteAugment | None:
    """The background-pasting augmentation of the training split, or None when it is off."""
    if not opts.augment or opts.paste_backgrounds <= 0:
        return None
    t = time.monotonic()
    paste = PasteAugment.from_images(train.images, opts.paste_backgrounds)
    opts.timings["cut_out_s"] = time.monotonic() - t
    log.info(
        "pasting onto other backgrounds (p=%.2f): %d of %d training photos cut out of a white board, "
        "%d floor strips from the others, in %.1f s",
        opts.paste_backgrounds,
        paste.n_cutouts,
        len(train.labels),
        paste.backgrounds.n_floor_strips,
        opts.timings["cut_out_s"],
    )
    return paste


def _train_head_cached(
    opts, base, dropout, dense, data, weights, strategy, logs, paste=None
) -> list[dict[str, Any]]:
    """Phase 1 on features computed once per image (no other augmentation: each image is seen as is).

    With ``paste``, one pasted copy of each photo it picks is added to the training features.
    """
    t = time.monotonic()

    def cached(arrays: Arrays, what: str) -> np.ndarray:
        ds = image_dataset(arrays, opts.batch_size, training=False, seed=opts.seed, with_labels=False)
        return predict(base, ds, len(arrays.labels), opts.batch_size, f"features of {what}")

    features = {s: cached(data[s], f"{s} photos") for s in ("train", "val")}
    labels = data["train"].labels
    if paste is not None:
        picked, pasted = paste.fixed_copies(opts.seed)
        if len(picked):
            copies = Arrays(images=pasted, labels=labels[picked], paths=[], sources=[])
            features["train"] = np.concatenate([features["train"], cached(copies, "pasted copies")])
            labels = np.concatenate([labels, labels[picked]])
    opts.timings["cache_features_s"] = time.monotonic() - t
    log.info(
        "cached %s features for %d images in %.1f s",
        features["train"].shape[1:],
        sum(len(f) for f in features.values()),
        opts.timings["cache_features_s"],
    )
    with strategy.scope():
        inputs = keras.Input(shape=features["train"].shape[1:], name="features")
        head = keras.Model(inputs, dense(dropout(inputs)), name="head")
    cached = {
        "train": Arrays(images=features["train"], labels=labels, paths=[], sources=[]),
        "val": Arrays(images=features["val"], labels=data["val"].labels, paths=[], sources=[]),
    }
    t = time.monotonic()
    history = _fit(
        opts, head, opts.head_lr, opts.head_epochs, cached, weights, strategy, logs, "head", cached=True
    )
    opts.timings["head_fit_s"] = time.monotonic() - t
    return history


def _fit(
    opts, model, lr, epochs, data, weights, strategy, logs, phase, extra=(), cached=False, paste=None
) -> list[dict[str, Any]]:
    n_classes = int(model.output_shape[-1])
    _compile(model, opts, strategy, lr)
    if cached:
        train_ds = tf.data.Dataset.from_tensor_slices(
            (data["train"].images, _one_hot(data["train"].labels, n_classes))
        )
        train_ds = train_ds.shuffle(len(data["train"].labels), seed=opts.seed).batch(opts.batch_size)
        val_ds = tf.data.Dataset.from_tensor_slices(
            (data["val"].images, _one_hot(data["val"].labels, n_classes))
        ).batch(opts.batch_size)
    else:
        train_ds = image_dataset(
            data["train"],
            opts.batch_size,
            training=opts.augment,
            seed=opts.seed,
            one_hot=n_classes,
            mixup_alpha=opts.mixup,
            paste=paste,
        )
        val_ds = image_dataset(
            data["val"], opts.batch_size, training=False, seed=opts.seed, one_hot=n_classes
        )
    epochs_bar = EpochBar(phase)
    callbacks = [
        _NotedInterrupt(),
        epochs_bar,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=opts.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(logs.parent / f"history_{phase}.csv")),
        *_tensorboard(logs / phase),
        *extra,
    ]
    log.info("phase %s: up to %d epochs", phase, epochs)
    try:
        result = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            class_weight=weights,
            callbacks=callbacks,
            verbose=0 if progress.wanted() else opts.verbose,  # the bar, or Keras's lines
            shuffle=False,  # the dataset shuffles itself, with the seed
        )
    finally:
        epochs_bar.close()
    keys = list(result.history)
    return [
        {"phase": phase, "epoch": i + 1, **{k: float(result.history[k][i]) for k in keys}}
        for i in range(len(result.epoch))
    ]


class _NotedInterrupt(keras.callbacks.Callback):
    """Stop at the next batch on a Ctrl-C or SIGTERM that TensorFlow's clean-up code swallowed."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        interrupts.raise_if_noted()


def _compile(
    model: keras.Model, opts: TrainOptions, strategy: tf.distribute.Strategy, learning_rate: float = 1e-3
) -> None:
    """One loss for every phase and for the checkpoint baseline, so their val_loss values compare."""
    with strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=opts.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def _tensorboard(log_dir: Path) -> list[keras.callbacks.Callback]:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir))]


def _val_loss(
    model: keras.Model, opts: TrainOptions, arrays: Arrays, strategy: tf.distribute.Strategy
) -> float:
    _compile(model, opts, strategy)
    n_classes = int(model.output_shape[-1])
    ds = image_dataset(arrays, opts.batch_size, training=False, seed=0, one_hot=n_classes)
    return float(model.evaluate(ds, verbose=0, return_dict=True)["loss"])


def _unfreeze_top(base: keras.Model, n_layers: int, train_batchnorm: bool = False) -> int:
    """Make the top ``n_layers`` layers of ``base`` trainable; return how many have weights.

    BatchNorm layers stay frozen (inference mode, ImageNet statistics) unless ``train_batchnorm``:
    a frozen layer in Keras 3 always normalises with its moving statistics.
    """
    base.trainable = True
    cut = max(len(base.layers) - n_layers, 0)
    count = 0
    for i, layer in enumerate(base.layers):
        is_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= cut and (train_batchnorm or not is_norm)
        count += int(layer.trainable and bool(layer.weights))
    return count


def _weights_record(backbone: str, weights: str | None) -> dict[str, str]:
    """``weights``: 'none', 'imagenet' or the file's absolute path; for a file also its sha256 (provenance).

    The Lite variants' 'imagenet' is a file of an installed package: its name, version and sha256 too.
    """
    if weights == "imagenet" and backbone in EFFICIENTNET_LITE:
        packaged = packaged_weights(backbone)
        return {
            "weights": weights,
            "weights_package": f"{packaged.package}=={packaged.version}",
            "weights_file": packaged.path.name,
            "weights_sha256": file_sha256(packaged.path),
        }
    if weights is None or weights == "imagenet":
        return {"weights": weights or "none"}
    path = Path(weights).resolve()
    return {"weights": str(path), "weights_sha256": file_sha256(path)}


def _write_run_json(opts: TrainOptions, scan: ScanResult, run_dir: Path, metrics: dict[str, Any]) -> None:
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "timings"}
    args["input_size"] = list(opts.input_size)
    args["data_dirs"] = [str(p) for p in opts.data_dirs]
    run = {
        "labels": scan.labels,
        "input_size": list(opts.input_size),
        "resize": opts.resize,
        "backbone": opts.backbone,
        "alpha": opts.alpha,
        **_weights_record(opts.backbone, opts.weights),
        "seed": opts.seed,
        "data_dirs": [str(s.path) for s in scan.sets],
        "data": [scan.fingerprint(s.name) for s in scan.sets],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": MODEL_NAME,
        "dataset": {
            "usable": len(scan.items),
            "skipped": len(scan.skipped),
            "counts": scan.counts(),
            "sets": {s.name: scan.counts(s.name) for s in scan.sets},
        },
        "metrics": {
            "val_accuracy": metrics["val"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"],
            "test_macro_f1": metrics["test"]["macro_f1"],
        },
        "timings_s": {k: round(v, 1) for k, v in opts.timings.items()},
        "args": args,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    }
    (run_dir / RUN_JSON).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
