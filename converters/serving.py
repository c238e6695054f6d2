"""``smartbin export-serving``: a TF SavedModel that takes encoded photos, for TF Serving.

The signature ``serving_default`` takes ``image_bytes``: a batch of JPEG/PNG/BMP/GIF strings (TF
Serving's REST API decodes ``{"b64": ...}`` into these), decodes each to RGB, resizes it to
the model's input the way training did (stretch or centre crop; area averaging when shrinking) and returns:

- ``scores``: float32 [batch, n_labels], in label order;
- ``labels``: string [batch, n_labels], the label names (so a client needs no labels file);
- ``label``: string [batch], the top-1 label.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from smartbin.device.errors import SmartbinError

from .run_dir import TrainingRun, load_keras_model, load_run

INPUT_NAME = "image_bytes"


def make_decoder(tf, run: TrainingRun):
    """A function: encoded image bytes -> float32 [H, W, 3] pixels 0..255, resized like the device does."""
    height, width = run.height, run.width

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        if run.resize == "center_crop":
            shape = tf.shape(image)
            h, w = shape[0], shape[1]
            crop_w = tf.minimum(w, tf.cast(tf.round(tf.cast(h, tf.float32) * width / height), tf.int32))
            crop_h = tf.minimum(h, tf.cast(tf.round(tf.cast(w, tf.float32) * height / width), tf.int32))
            image = tf.image.crop_to_bounding_box(image, (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w)
        # Like resize_frame on the bin: area averaging when shrinking (cv2.INTER_AREA), else
        # bilinear with half-pixel centres (cv2.INTER_LINEAR).
        shape = tf.shape(image)
        shrinking = tf.logical_and(shape[0] >= height, shape[1] >= width)
        pixels = tf.cast(image, tf.float32)
        resized = tf.cond(
            shrinking,
            lambda: tf.image.resize(pixels, [height, width], method="area"),
            lambda: tf.image.resize(pixels, [height, width], method="bilinear"),
        )
        return tf.clip_by_value(tf.round(resized), 0.0, 255.0)

    return decode


def export_serving(run_dir: str | Path, out: str | Path) -> Path:
    """Write the SavedModel to ``out`` (which must not exist yet) and return its path."""
    import keras
    import tensorflow as tf

    out = Path(out)
    if out.exists():
        raise SmartbinError(f"{out}: already exists; choose a new --out (a SavedModel is never overwritten)")
    run = load_run(run_dir)
    model = load_keras_model(run)
    labels = tf.constant(list(run.labels))
    decode = make_decoder(tf, run)

    def serve(image_bytes):
        pixels = tf.map_fn(
            decode, image_bytes, fn_output_signature=tf.TensorSpec([run.height, run.width, 3], tf.float32)
        )
        scores = model(pixels, training=False)
        batch = tf.shape(image_bytes)[0]
        return {
            "scores": scores,
            "labels": tf.tile(labels[tf.newaxis], [batch, 1]),
            "label": tf.gather(labels, tf.argmax(scores, axis=1)),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive.write_out(str(staging), verbose=False)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
