"""Training pipelines: one-hot labels and mixup."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from smartbin.training.data import Arrays, image_dataset, mixup  # noqa: E402


def test_mixup_blends_images_and_labels_alike_and_keeps_each_image_dominant() -> None:
    tf.random.set_seed(3)
    values = np.array([0.0, 100.0, 200.0], np.float32)  # image i is class i, all pixels values[i]
    images = tf.constant(values[:, None, None, None] * np.ones((3, 4, 4, 3), np.float32))
    mixed_images, mixed_targets = mixup(images, tf.one_hot([0, 1, 2], 3), alpha=0.4)
    rows = mixed_targets.numpy()
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(rows.argmax(axis=1), [0, 1, 2])
    assert (rows.max(axis=1) >= 0.5).all()
    # the pixels are mixed with the very weights the labels were
    np.testing.assert_allclose(mixed_images.numpy()[:, 0, 0, 0], rows @ values, rtol=1e-5, atol=1e-3)


def test_one_hot_batches_and_mixup_only_on_training_batches() -> None:
    tf.random.set_seed(0)
    arrays = Arrays(
        images=np.stack([np.full((8, 8, 3), 40 * i, np.uint8) for i in range(6)]),
        labels=np.array([0, 1, 2, 0, 1, 2], np.int32),
        paths=[f"{i}.jpg" for i in range(6)],
        sources=["set"] * 6,
    )
    val = image_dataset(arrays, 6, training=False, seed=0, one_hot=3, mixup_alpha=0.2)
    images, targets = next(iter(val))
    np.testing.assert_array_equal(targets.numpy(), np.eye(3)[arrays.labels])
    np.testing.assert_array_equal(images.numpy(), arrays.images.astype(np.float32))

    train = image_dataset(arrays, 6, training=True, seed=0, one_hot=3, mixup_alpha=0.4)
    _, targets = next(iter(train))
    assert targets.shape == (6, 3)
    np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert not set(np.unique(targets.numpy())) <= {0.0, 1.0}  # soft targets: batches were mixed
