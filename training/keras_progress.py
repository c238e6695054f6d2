"""Keras's fits and predictions on :mod:`.progress` bars (Keras's own lines stay for logs that are no terminal)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .progress import Bar, bar


class EpochBar(keras.callbacks.Callback):
    """One bar over every batch of every epoch of a fit, named ``<phase> epoch 3/30``, with the last
    epoch's validation figures and the time left over all epochs (early stopping may end it sooner)."""

    def __init__(self, phase: str) -> None:
        super().__init__()
        self.phase = phase
        self.bar: Bar | None = None
        self.per_batch = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        epochs, steps = self.params["epochs"], self.params.get("steps")
        self.per_batch = bool(steps)  # unknown when the dataset's length is
        self.bar = bar(
            total=epochs * steps if steps else epochs,
            desc=self.phase,
            unit="batch" if steps else "epoch",
            leave=True,
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.bar.set_description(f"{self.phase} epoch {epoch + 1}/{self.params['epochs']}", refresh=False)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.per_batch:
            self.bar.update()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        shown = [f"val_loss {logs['val_loss']:.3f}"] if "val_loss" in logs else []
        shown += [f"val_acc {100 * logs['val_accuracy']:.0f}%"] if "val_accuracy" in logs else []
        self.bar.set_postfix_str(", ".join(shown), refresh=False)
        if not self.per_batch:
            self.bar.update()

    def close(self) -> None:
        """Close the bar, also after a fit that raised (Keras then skips ``on_train_end``)."""
        if self.bar is not None:
            self.bar.close()


class _StepBar(keras.callbacks.Callback):
    def __init__(self, steps: Bar) -> None:
        super().__init__()
        self.steps = steps

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.steps.update()


def predict(model: keras.Model, ds: tf.data.Dataset, images: int, batch_size: int, desc: str) -> np.ndarray:
    """``model.predict`` on a batched dataset of ``images``, with a bar over its batches."""
    with bar(total=math.ceil(images / batch_size), desc=desc, unit="batch") as steps:
        return np.asarray(model.predict(ds, verbose=0, callbacks=[_StepBar(steps)]))
