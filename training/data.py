"""Images in memory and the tf.data pipelines that feed them to Keras.

Images are resized once, exactly as the device resizes camera frames, and kept as uint8;
augmentation runs on the training split only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .cutpaste import PasteAugment
from .dataset import Item
from .images import load_rgb, resize_rgb
from .progress import bar


@dataclass(frozen=True)
class Arrays:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32
    paths: list[str]
    sources: list[str]  # the photo set of each image


def load_arrays(
    items: Sequence[Item],
    labels: Sequence[str],
    size: tuple[int, int],
    resize: str,
    what: str = "reading photos",
) -> Arrays:
    """The photos decoded and resized, with a bar named ``what``."""
    index = {label: i for i, label in enumerate(labels)}
    images = np.empty((len(items), *size, 3), dtype=np.uint8)
    for i, item in enumerate(bar(items, desc=what)):
        images[i] = resize_rgb(load_rgb(item.path), size, resize)
    return Arrays(
        images=images,
        labels=np.array([index[item.label] for item in items], dtype=np.int32),
        paths=[str(item.path) for item in items],
        sources=[item.source for item in items],
    )


def augment(image: tf.Tensor) -> tf.Tensor:
    """Random mirror images (both axes), zoom 80-100 %, brightness, contrast and saturation on 0..255 floats."""
    height, width = image.shape[0], image.shape[1]
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    scale = tf.random.uniform([], 0.8, 1.0)
    crop = tf.stack([tf.cast(scale * height, tf.int32), tf.cast(scale * width, tf.int32), 3])
    image = tf.image.resize(tf.image.random_crop(image, crop), (height, width))
    image = tf.image.random_brightness(image, 0.1 * 255.0)
    image = tf.image.random_contrast(image, 0.8, 1.2)
    image = tf.image.random_saturation(image, 0.8, 1.2)
    return tf.clip_by_value(image, 0.0, 255.0)


def mixup(images: tf.Tensor, targets: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend each example of a batch with another one of the same batch (mixup, Zhang et al. 2018).

    ``targets`` are one-hot; each pair gets its own weight from Beta(alpha, alpha), kept at 0.5 or
    more so the first image of a pair dominates (Keras's class weights then follow its label).
    """
    n = tf.shape(images)[0]
    a = tf.random.gamma([n], alpha)
    b = tf.random.gamma([n], alpha)
    weight = tf.maximum(a / (a + b), b / (a + b))
    partner = tf.random.shuffle(tf.range(n))
    images = _blend(images, tf.gather(images, partner), tf.reshape(weight, [-1, 1, 1, 1]))
    targets = _blend(targets, tf.gather(targets, partner), tf.reshape(weight, [-1, 1]))
    return images, targets


def _blend(x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    return weight * x + (1.0 - weight) * y


def image_dataset(
    arrays: Arrays,
    batch_size: int,
    *,
    training: bool,
    seed: int,
    with_labels: bool = True,
    one_hot: int = 0,
    mixup_alpha: float = 0.0,
    paste: PasteAugment | None = None,
) -> tf.data.Dataset:
    """Batches of float32 pixels 0..255 (and labels); shuffled and augmented when ``training``.

    ``one_hot``: the number of classes to give labels as one-hot rows (needed for label smoothing
    and mixup); ``mixup_alpha`` > 0 mixes training batches (one-hot labels only); ``paste`` (made
    from these very ``arrays``) pastes items onto other backgrounds before the other augmentations.
    """
    pasting = training and paste is not None
    columns = (arrays.images, arrays.labels)
    if pasting:
        columns += (np.arange(len(arrays.labels)),)  # which photo, for its cut-out
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        ds = ds.shuffle(len(arrays.labels), seed=seed, reshuffle_each_iteration=True)
    if pasting:
        ds = _pasted(ds, paste, seed)
    ds = ds.map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if training:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not with_labels:
        ds = ds.map(lambda x, y: x)
    elif one_hot:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, one_hot)))
    ds = ds.batch(batch_size)
    if training and with_labels and one_hot and mixup_alpha > 0:
        ds = ds.map(lambda x, y: mixup(x, y, mixup_alpha))
    return ds.prefetch(tf.data.AUTOTUNE)


def _pasted(ds: tf.data.Dataset, paste: PasteAugment, seed: int) -> tf.data.Dataset:
    """(image, label, index) -> (image, label), each image through ``paste`` with a seed of its own.

    The per-image seeds come from a seeded stream that changes every epoch, so each epoch pastes
    anew and a run repeats exactly under its seed, however many threads the map uses.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def apply(
        columns: tuple[tf.Tensor, tf.Tensor, tf.Tensor], draw: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        image, label, index = columns
        pasted = tf.numpy_function(paste, [image, index, draw], tf.uint8, stateful=False)
        return tf.ensure_shape(pasted, image.shape), label

    return tf.data.Dataset.zip(ds, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights (mean 1) so a smaller class counts as much as a larger one."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    counts[counts == 0] = 1.0
    weights = len(labels) / (n_classes * counts)
    return {i: float(w) for i, w in enumerate(weights)}
