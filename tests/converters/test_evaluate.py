"""smartbin evaluate: accuracy, per-class metrics, confusion matrix and latency for a folder of photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smartbin.converters.evaluate import evaluate_bundle
from smartbin.device.cli import main
from smartbin.device.errors import BundleError

from .conftest import coloured_photo, write_photo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"


@pytest.fixture(scope="module")
def int8_bundle(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "bundle"
    assert (
        main(["convert", str(tiny_run), "--quantize", "int8", "--out", str(out), "--version", "tiny-1"]) == 0
    )
    return out


@pytest.fixture
def photos(tmp_path):
    """Labelled photos with the clutter real folders have: a stray folder, a text file, a broken JPEG."""
    rng = np.random.default_rng(3)
    root = tmp_path / "photos"
    for label in ("can", "glass", "plastic"):
        for i in range(4):
            write_photo(root / label / f"{i}.jpg", coloured_photo(label, rng))
    # A can photo filed under glass: one known mistake in the confusion matrix.
    write_photo(root / "glass" / "misfiled.png", coloured_photo("can", rng))
    write_photo(root / "cardboard" / "0.jpg", coloured_photo("can", rng))
    (root / "can" / "notes.txt").write_text("not a photo")
    whole = (root / "plastic" / "0.jpg").read_bytes()
    (root / "plastic" / "broken.jpg").write_bytes(
        whole[: len(whole) // 2]
    )  # truncated: OpenCV alone decodes it
    return root


def test_evaluate_reports_metrics_png_and_latency(int8_bundle, photos, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(["evaluate", str(int8_bundle), str(photos), "--json", "--threads", "1", "--out", str(out)]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == "tiny-1" and report["quantization"] == "int8"
    assert report["images"] == 14 and report["images_of_its_labels"] == 13  # cardboard: not a label
    assert report["accuracy"] == pytest.approx(12 / 13)
    assert report["confusion_matrix"] == [[4, 0, 0], [1, 4, 0], [0, 0, 4]]
    assert report["per_class"]["can"] == pytest.approx(
        {"precision": 0.8, "recall": 1.0, "f1": 8 / 9, "support": 4}
    )
    assert report["per_class"]["glass"]["recall"] == pytest.approx(0.8)
    assert report["misclassified"][0]["path"].endswith("glass/misfiled.png")
    assert report["misclassified"][0]["predicted"] == "can"
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] and latency["threads"] == 1
    notes = " | ".join(report["notes"])
    assert "cardboard" in notes and "notes.txt" in notes and "broken.jpg" in notes
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == report["accuracy"]


def test_evaluate_draws_its_bar_on_stderr_only_when_asked(photos, tmp_path, capsys, monkeypatch):
    bundle = str(FIXTURES / "colour3-int8")  # a ready bundle: no TensorFlow
    assert main(["evaluate", bundle, str(photos), "--out", str(tmp_path / "plain")]) == 0
    plain = capsys.readouterr()
    assert "evaluating" not in plain.err and "photo/s" not in plain.err  # stderr is no terminal
    monkeypatch.setenv("SMARTBIN_PROGRESS", "1")
    assert main(["evaluate", bundle, str(photos), "--out", str(tmp_path / "forced")]) == 0
    forced = capsys.readouterr()
    assert "\revaluating:" in forced.err and "/15 [" in forced.err  # 15 photos: broken.jpg too
    assert "photo/s]" in forced.err
    assert "\r" not in forced.out  # the report on stdout stays clean
    assert forced.out.splitlines()[0] == plain.out.splitlines()[0]


def test_evaluate_prints_a_readable_summary(int8_bundle, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(int8_bundle), str(photos)]) == 0
    text = capsys.readouterr().out
    assert "tiny-1 (int8) on 14 images (1 of kinds it was not taught): accuracy 92.3%" in text
    assert "p50" in text and "p95" in text
    assert "cardboard: no such label in the model" in text
    assert "where the photos land (the default config; sorts at confidence can " in text
    assert (tmp_path / "evaluation-tiny-1" / "confusion_matrix.png").is_file()


def test_evaluate_needs_class_folders(int8_bundle, tmp_path, capsys):
    (tmp_path / "photos" / "can").mkdir(parents=True)
    assert main(["evaluate", str(int8_bundle), str(tmp_path / "photos"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("smartbin: error:")
        and "no photos in sub-folders" in err
        and "(the model's labels: can, glass, plastic)" in err
    )
    assert not (tmp_path / "r").exists()


def write_config(path, sorting: str):
    path.write_text(f"[camera]\nkind = 'folder'\n\n[sorting]\n{sorting}\n")
    return path


def test_where_each_class_lands_under_a_config(int8_bundle, photos, tmp_path, capsys):
    """At threshold 0 every photo goes where its top label is mapped: the misfiled can photo in glass
    and the can-coloured cardboard land in the can compartment and spoil it."""
    config = write_config(tmp_path / "zero.toml", "threshold = 0.0")
    assert (
        main(
            [
                "evaluate",
                str(int8_bundle),
                str(photos),
                "--json",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert {t["source"] for t in report["thresholds"].values()} == {"config"}
    outcome = report["sorting"]
    assert outcome["by_class"]["can"] | {"images": 0} == {
        "images": 0,
        "recyclable": True,
        "own": 1.0,
        "wrong_recycling": 0.0,
        "rest": 0.0,
        "no_move": 0.0,
    }
    assert outcome["by_class"]["glass"]["own"] == pytest.approx(0.8) and outcome["by_class"]["glass"][
        "wrong_recycling"
    ] == pytest.approx(0.2)
    assert outcome["by_class"]["cardboard"] == {
        "images": 1,
        "recyclable": False,
        "own": 0.0,
        "wrong_recycling": 1.0,
        "rest": 0.0,
        "no_move": 0.0,
    }
    assert outcome["compartments"]["can"] == {"items": 6, "purity": pytest.approx(4 / 6, abs=1e-4)}
    assert outcome["compartments"]["plastic"] == {"items": 4, "purity": 1.0}
    assert outcome["recyclables"]["images"] == 13 and outcome["rest"]["wrong_recycling"] == 1.0
    assert (tmp_path / "r" / "sorting_sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_set_of_kinds_the_model_never_saw_measures_where_they_go(int8_bundle, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_photo(tmp_path / "photos" / "food" / f"{i}.jpg", coloured_photo("glass", rng))
    config = write_config(tmp_path / "c.toml", "threshold = 0.0")
    assert (
        main(
            [
                "evaluate",
                str(int8_bundle),
                str(tmp_path / "photos"),
                "--config",
                str(config),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "on 3 images (3 of kinds it was not taught): no photos of its labels" in text
    assert (
        "non-recyclables: 3 photos, 0.0% kept out of the recycling, 100.0% into a recycling compartment"
        in text
    )


def test_evaluate_never_writes_into_what_it_reads_or_into_a_run(int8_bundle, photos, tiny_run, capsys):
    for out, says in (
        (photos / "can", f"--out {photos / 'can'} is inside {photos}, which this command reads"),
        (tiny_run, f"--out {tiny_run} holds files that no evaluation wrote"),  # its metrics.json stays
    ):
        before = sorted(p.name for p in out.iterdir())
        assert main(["evaluate", str(int8_bundle), str(photos), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("smartbin: error: ") and says in err and err.count("\n") == 1
        assert sorted(p.name for p in out.iterdir()) == before


def test_evaluating_again_into_the_same_folder_leaves_no_picture_of_the_first(
    int8_bundle, photos, tmp_path, capsys
):
    shutil.copytree(photos, tmp_path / "second")
    out = tmp_path / "report"
    assert main(["evaluate", str(int8_bundle), str(photos), str(tmp_path / "second"), "--out", str(out)]) == 0
    assert (out / "confusion_matrix_second.png").is_file()
    assert main(["evaluate", str(int8_bundle), str(photos), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "sorting_sweep.png",
    ]


def test_evaluate_missing_folder_and_bad_bundle(int8_bundle, tmp_path, capsys):
    assert main(["evaluate", str(int8_bundle), str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err
    broken = shutil.copytree(int8_bundle, tmp_path / "broken")
    (broken / "model.tflite").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="corrupt or truncated"):
        evaluate_bundle(broken, tmp_path)


def test_evaluate_runs_with_what_a_bin_has(int8_bundle, photos, tmp_path):
    """No Pillow, matplotlib, TensorFlow or Keras (the [device] extra): the report, without its PNG."""
    code = (
        "import sys\n"
        "for name in ('PIL', 'matplotlib', 'tensorflow', 'keras'):\n"
        "    sys.modules[name] = None\n"
        "from smartbin.device.cli import main\n"
        f"sys.exit(main(['evaluate', {str(int8_bundle)!r}, {str(photos)!r}, '--out', {str(tmp_path / 'r')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "accuracy 92.3%" in result.stdout
    assert "note: matplotlib is not installed" in result.stdout and "purity: " in result.stdout
    assert (tmp_path / "r" / "metrics.json").is_file() and not (
        tmp_path / "r" / "confusion_matrix.png"
    ).exists()
