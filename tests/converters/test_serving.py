"""smartbin export-serving: a SavedModel whose signature answers encoded photos with labelled scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smartbin.converters.frames import load_frames
from smartbin.converters.parity import keras_scores
from smartbin.converters.run_dir import TrainingRun, load_keras_model, load_run
from smartbin.converters.serving import make_decoder
from smartbin.device.cli import main
from smartbin.device.vision.classifier import resize_frame

from .conftest import coloured_photo


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    import tensorflow as tf

    out = tmp_path_factory.mktemp("serving") / "savedmodel"
    assert main(["export-serving", str(tiny_run), "--out", str(out)]) == 0
    return tf.saved_model.load(str(out)).signatures["serving_default"]


def encode(rgb: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def test_signature_answers_jpeg_bytes_with_labels(served):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    labels = ["plastic", "can", "glass", "can"]
    photos = [encode(coloured_photo(label, rng), ".jpg") for label in labels]  # different sizes in one batch
    result = served(image_bytes=tf.constant(photos))
    assert [x.decode() for x in result["label"].numpy()] == labels
    assert result["scores"].shape == (4, 3)
    np.testing.assert_allclose(result["scores"].numpy().sum(axis=1), 1.0, atol=1e-5)
    assert [x.decode() for x in result["labels"].numpy()[0]] == ["can", "glass", "plastic"]


def test_signature_preprocesses_like_training(served, tiny_run):
    """PNG bytes (lossless) through the signature score like the training pipeline's pixels."""
    import tensorflow as tf

    run = load_run(tiny_run)
    examples = [ex for ex in run.splits["test"] if ex.path.suffix == ".png"]
    assert examples
    expected = keras_scores(load_keras_model(run), load_frames(examples, run.input_spec()))
    got = served(image_bytes=tf.constant([ex.path.read_bytes() for ex in examples]))["scores"].numpy()
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_export_refuses_an_existing_directory(tiny_run, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export-serving", str(tiny_run), "--out", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
@pytest.mark.parametrize("shape", [(48, 80), (90, 40), (20, 20), (100, 130)])
def test_decoding_in_the_signature_matches_the_device(resize, shape):
    """The signature's decode + resize gives the device's pixels (PNG: no decoder differences)."""
    import tensorflow as tf

    run = TrainingRun(path=None, labels=("a", "b"), height=32, width=24, resize=resize, info={}, splits={})
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = make_decoder(tf, run)(tf.constant(encode(rgb, ".png"))).numpy()
    expected = resize_frame(rgb, run.input_spec()).astype(np.float32)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1.0
