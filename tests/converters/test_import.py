"""``smartbin bundle import``: a .tflite and labels.txt exported elsewhere become a bundle that the
device's classifier, ``classify`` and ``store verify`` take unchanged; bad exports are refused in one
line and nothing is written.

The models are built here, tiny (32x32 input, one dense layer with hand-set weights: red scores
``can``, green ``glass``, blue ``plastic``) and converted as Teachable Machine and Model Maker
export them: float input in -1..1 or 0..1, uint8 or int8 quantised, with or without a softmax.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from smartbin.device.cli import main
from smartbin.device.hardware.cameras import SAMPLES_DIR, list_images, read_rgb
from smartbin.device.vision.bundle import file_sha256, load_bundle
from smartbin.device.vision.classifier import Classifier

from .conftest import COLOURS, LABELS, SIZE, write_photo

# The converter's note on every int8 conversion from Keras: nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

TM_LABELS = "".join(f"{i} {label}\n" for i, label in enumerate(LABELS))
PLAIN_LABELS = "".join(f"{label}\n" for label in LABELS)


def build(kind: str = "softmax"):
    """Mean colour -> scores; ``logits`` leaves out the softmax, ``constant`` zeroes the weights,
    ``vector`` takes 12 numbers instead of an image."""
    import keras

    inputs = keras.Input((12,) if kind == "vector" else (SIZE, SIZE, 3))
    x = inputs if kind == "vector" else keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(len(LABELS))
    outputs = dense(x)
    if kind != "logits":
        outputs = keras.layers.Softmax()(outputs)
    weights = np.zeros((x.shape[-1], len(LABELS)), np.float32)
    if kind != "constant":
        weights[:3] = np.eye(3) * 8.0
    dense.set_weights([weights, np.zeros(len(LABELS), np.float32)])
    return keras.Model(inputs, outputs)


def to_tflite(model, integer: str | None = None, value_range: tuple[float, float] = (-1.0, 1.0)) -> bytes:
    """Float, or full-integer with ``integer`` (uint8/int8) input and output, calibrated on ``value_range``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if integer:
        low, high = value_range

        def frames():
            rng = np.random.default_rng(0)
            yield [np.full((1, SIZE, SIZE, 3), low, np.float32)]
            yield [np.full((1, SIZE, SIZE, 3), high, np.float32)]
            for _ in range(30):
                colour = rng.uniform(low, high, size=3)
                yield [np.broadcast_to(colour, (1, SIZE, SIZE, 3)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = frames
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, integer)
    return converter.convert()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """``<name>.tflite`` files as the tools export them, and both kinds of labels file."""
    root = tmp_path_factory.mktemp("exports")
    softmax = build()
    models = {
        "tm-float": to_tflite(softmax),  # Teachable Machine "floating point": -1..1
        "tm-uint8": to_tflite(softmax, "uint8"),  # Teachable Machine "quantized"
        "mm-int8": to_tflite(softmax, "int8", (0.0, 1.0)),  # int8 in and out, trained on 0..1
        "logits-float": to_tflite(build("logits")),
        "constant-float": to_tflite(build("constant")),
        "vector-float": to_tflite(build("vector")),
    }
    for name, data in models.items():
        (root / f"{name}.tflite").write_bytes(data)
    (root / "tm-labels.txt").write_text(TM_LABELS)
    (root / "plain-labels.txt").write_text(PLAIN_LABELS)
    return root


def fails(capsys, *argv) -> str:
    """Run smartbin, expect exit 1 and one error line; return that line."""
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("smartbin: error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("model", "labels", "options", "found", "scale", "offset", "kind"),
    [
        (
            "tm-float",
            "tm",
            [],
            "float32: pixels scaled to -1..1 (the default",
            2 / 255,
            -1.0,
            "probabilities",
        ),
        ("tm-uint8", "tm", [], "uint8: pixels go in as they are", None, None, "probabilities"),
        ("mm-int8", "plain", [], "int8: pixels go in as -128..127", None, None, "probabilities"),
        (
            "logits-float",
            "plain",
            ["--input-range", "0", "1"],
            "0..1 (--input-range)",
            1 / 255,
            0.0,
            "logits",
        ),
    ],
)
def test_an_export_becomes_a_bundle_the_bin_runs(
    exports, tmp_path, capsys, monkeypatch, model, labels, options, found, scale, offset, kind
):
    monkeypatch.delenv("SMARTBIN_CONFIG", raising=False)
    source, out = exports / f"{model}.tflite", tmp_path / "bundle"
    assert (
        main(
            [
                "bundle",
                "import",
                str(source),
                str(exports / f"{labels}-labels.txt"),
                "--out",
                str(out),
                *options,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert found in printed and f"smartbin classify PHOTO.jpg --model {out}" in printed
    assert (
        "labels (" + ("Teachable Machine" if labels == "tm" else "plain names") + "): can, glass, plastic"
        in printed
    )
    assert "note:" not in printed  # the default config sorts by can, glass and plastic

    bundle = load_bundle(out)
    assert bundle.labels == LABELS and bundle.output_kind == kind
    assert bundle.sha256 == file_sha256(source)
    assert bundle.manifest["training"] | {"input_range": None} == {
        "source": "imported",
        "file": source.name,
        "sha256": file_sha256(source),
        "labels_file": f"{labels}-labels.txt",
        "labels_format": "Teachable Machine" if labels == "tm" else "plain names",
        "input_range": None,
        "input_range_from": "--input-range" if options else "default" if scale else "quantisation",
    }
    classifier = Classifier(bundle)
    if scale is not None:  # a float input: the range chosen
        assert bundle.input.scale == pytest.approx(scale) and bundle.input.offset == pytest.approx(offset)
    else:  # an integer input: each pixel on its own level (uint8: the pixel itself, int8: pixel - 128)
        pixels = np.arange(256, dtype=np.uint8).repeat(SIZE * SIZE * 3 // 256 + 1)[: SIZE * SIZE * 3]
        fed = classifier.preprocess(pixels.reshape(SIZE, SIZE, 3)).reshape(-1).astype(int)
        assert np.array_equal(fed, pixels.astype(int) - (128 if model == "mm-int8" else 0))

    rng = np.random.default_rng(1)
    for label, colour in COLOURS.items():
        photo = np.clip(np.array(colour) + rng.normal(0, 10, (48, 64, 3)), 0, 255).astype(np.uint8)
        prediction = classifier.classify(photo)
        assert prediction.label == label and sum(prediction.scores.values()) == pytest.approx(1, abs=0.02)
    sample = read_rgb(list_images(SAMPLES_DIR)[0])
    assert classifier.classify(sample).label in LABELS

    photo = write_photo(tmp_path / "red.jpg", np.full((48, 48, 3), COLOURS["can"], np.uint8))
    assert main(["classify", str(photo), "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "can"
    assert main(["store", "verify", str(out), "--json"]) == 0  # what deploy runs on the bin
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_labels_the_config_does_not_sort_by_get_a_note(exports, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMARTBIN_CONFIG", raising=False)
    labels = tmp_path / "labels.txt"
    labels.write_text("0 Class 1\n1 Class 2\n2 Class 3\n")
    out = tmp_path / "bundle"
    assert main(["bundle", "import", str(exports / "tm-float.tflite"), str(labels), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: the built-in default config would refuse this model: model imported-float32-" in printed
    assert "has no label can, glass, plastic" in printed and "[sorting.labels]" in printed
    assert load_bundle(out).labels == ("Class 1", "Class 2", "Class 3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 can\n1 glass\n", "labels.txt has 2 labels but tm-float.tflite has 3 outputs"),
        ("can\n\nglass\nplastic\n", "line 2 is empty"),
        ("0 can\n1 glass\n2 can\n", "label 'can' is on lines 1 and 3; each label must be unique"),
        ("can\nglass\tbottle\nplastic\n", "line 2 holds a control character"),
        ("", "holds no labels"),
    ],
)
def test_bad_labels_are_refused(exports, tmp_path, capsys, text, message):
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    err = fails(capsys, "bundle", "import", exports / "tm-float.tflite", labels, "--out", tmp_path / "b")
    assert message in err
    assert not (tmp_path / "b").exists()


def test_bad_models_are_refused(exports, tmp_path, capsys):
    labels, out = exports / "plain-labels.txt", tmp_path / "b"
    text = tmp_path / "model.tflite"
    text.write_text("not a model\n")
    archive = tmp_path / "converted_tflite.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(exports / "tm-float.tflite", "model_unquant.tflite")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((exports / "tm-float.tflite").read_bytes()[:200])
    for model, message in [
        (text, "model.tflite: not a TensorFlow Lite model; give the .tflite file of the export"),
        (archive, "a zip archive (Teachable Machine downloads one); unzip it"),
        (cut, "cut.tflite: TFLite cannot load it ("),
        (tmp_path, "is a directory; give the .tflite file"),
        (tmp_path / "none.tflite", "none.tflite: no such file or folder"),
        (exports / "vector-float.tflite", "input shape is (1, 12), not one RGB image (1, height, width, 3)"),
        (
            exports / "constant-float.tflite",
            "constant-float.tflite: the model gives the same scores (0.333, 0.333, 0.333) for very "
            "different frames, so it cannot tell items apart; check --input-range, or export",
        ),
    ]:
        assert message in fails(capsys, "bundle", "import", model, labels, "--out", out)
    assert "--input-range 1 -1: give two finite numbers, the lowest first" in fails(
        capsys,
        "bundle",
        "import",
        exports / "tm-float.tflite",
        labels,
        "--out",
        out,
        "--input-range",
        "1",
        "-1",
    )
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "exists and is not a model bundle; choose another --out" in fails(
        capsys, "bundle", "import", exports / "tm-float.tflite", labels, "--out", out
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_import_runs_with_what_a_bin_has(exports, tmp_path):
    """No TensorFlow or Keras (the [device] extra), so a maker can import on the Pi itself."""
    argv = ["bundle", "import", str(exports / "tm-uint8.tflite"), str(exports / "tm-labels.txt")]
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras'):\n"
        "    sys.modules[name] = None\n"
        "from smartbin.device.cli import main\n"
        f"sys.exit(main({[*argv, '--out', str(tmp_path / 'b')]!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert load_bundle(tmp_path / "b").input.dtype == "uint8"
