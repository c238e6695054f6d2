"""Bad input to the converter commands: one-line errors, and nothing already written is lost."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from smartbin.converters.convert import convert_run
from smartbin.device.cli import main
from smartbin.device.errors import SmartbinError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def fails(capsys, *argv) -> str:
    """Run smartbin, expect exit 1 and one error line; return that line."""
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("smartbin: error: ") and len(err.splitlines()) == 1, err
    return err


def rewrite_splits(run_dir, keep) -> None:
    with open(run_dir / "splits.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if keep(row)]
    with open(run_dir / "splits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("model.keras", "no model.keras in the run directory; train one with 'smartbin train"),
        ("run.json", "no run.json; is this a run directory?"),
        ("splits.csv", "no splits.csv; the run is incomplete"),
    ],
)
def test_incomplete_run_dir(run_copy, tmp_path, capsys, damage, message):
    (run_copy / damage).unlink()
    for command in (
        ["convert", run_copy, "--out", tmp_path / "b"],
        ["export-serving", run_copy, "--out", tmp_path / "s"],
    ):
        assert message in fails(capsys, *command)
    assert not (tmp_path / "b").exists() and not (tmp_path / "s").exists()


def test_missing_run_dir_and_corrupt_model(run_copy, tmp_path, capsys):
    assert "nope: no such folder" in fails(capsys, "convert", tmp_path / "nope", "--out", tmp_path / "b")
    whole = (run_copy / "model.keras").read_bytes()
    for damaged in (b"not a zip", whole[: len(whole) // 2], b""):  # not "File not found", as Keras says
        (run_copy / "model.keras").write_bytes(damaged)
        for command in ("convert", "export-serving"):
            err = fails(capsys, command, run_copy, "--out", tmp_path / "b")
            assert "model.keras: not a Keras model file (truncated or damaged)" in err


def test_a_short_row_in_splits_csv_names_its_line(run_copy, tmp_path, capsys):
    with open(run_copy / "splits.csv", "a", newline="") as f:
        f.write("/some/photo.jpg,can\n")
    err = fails(capsys, "convert", run_copy, "--out", tmp_path / "b")
    assert "splits.csv:" in err and "expected path,label,split" in err


def test_inconsistent_run_json(run_copy, tmp_path, capsys):
    text = (run_copy / "run.json").read_text()
    (run_copy / "run.json").write_text(text.replace('"plastic"', '"plastic", "paper"'))
    assert "model has 3 outputs but run.json lists 4 labels" in fails(
        capsys, "convert", run_copy, "--out", tmp_path / "b"
    )
    (run_copy / "run.json").write_text("{broken")
    assert "run.json: unreadable" in fails(capsys, "convert", run_copy, "--out", tmp_path / "b")


def test_empty_representative_set(run_copy, tmp_path, capsys):
    rewrite_splits(run_copy, lambda row: row["split"] != "train")
    err = fails(capsys, "convert", run_copy, "--quantize", "int8", "--out", tmp_path / "b")
    assert "the representative set is empty" in err
    assert not (tmp_path / "b").exists()


def test_no_held_out_images(run_copy, tmp_path, capsys):
    rewrite_splits(run_copy, lambda row: row["split"] == "train")
    assert "no test or validation images" in fails(capsys, "convert", run_copy, "--out", tmp_path / "b")


def test_gate_falls_back_to_validation_images(run_copy, tmp_path):
    rewrite_splits(run_copy, lambda row: row["split"] != "test")
    result = convert_run(run_copy, "float32", tmp_path / "b")
    assert (result.parity.split, result.parity.images) == ("val", 9)


def test_images_gone_since_training(run_copy, tmp_path, capsys):
    rewrite_splits(run_copy, lambda row: True)
    with open(run_copy / "splits.csv", "a", newline="") as f:
        f.write(f"{tmp_path / 'gone.jpg'},can,test\n")
    assert "listed in splits.csv are gone" in fails(capsys, "convert", run_copy, "--out", tmp_path / "b")


def test_out_is_not_a_bundle(tiny_run, tmp_path, capsys):
    (tmp_path / "photos.txt").write_text("precious")
    err = fails(capsys, "convert", tiny_run, "--out", tmp_path)
    assert "exists and is not a model bundle; choose another --out" in err
    assert [p.name for p in tmp_path.iterdir()] == ["photos.txt"]
    assert (tmp_path / "photos.txt").read_text() == "precious"


def test_a_bundle_holding_other_files_is_not_replaced(tiny_run, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "colour3-int8", bundle)
    (bundle / "NOTES.txt").write_text("precious")
    before = sorted(p.name for p in bundle.iterdir())
    err = fails(capsys, "convert", tiny_run, "--out", bundle)
    assert f"{bundle}: a model bundle that also holds NOTES.txt; move them out or choose another --out" in err
    assert sorted(p.name for p in bundle.iterdir()) == before


def test_unknown_quantisation_and_bad_numbers(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(tiny_run), "--quantize", "int4", "--out", str(tmp_path / "b")])
    assert exc.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(SmartbinError, match="unknown quantisation 'int4'"):
        convert_run(tiny_run, "int4", tmp_path / "b")
    assert "--max-drop must be 0 or more" in fails(
        capsys, "convert", tiny_run, "--out", tmp_path / "b", "--max-drop", "-1"
    )
    assert "--representative must be at least 1" in fails(
        capsys, "convert", tiny_run, "--out", tmp_path / "b", "--representative", "0"
    )
    assert "version 'bad/version'" in fails(
        capsys, "convert", tiny_run, "--out", tmp_path / "b", "--version", "bad/version"
    )
    assert not (tmp_path / "b").exists()


def test_cli_module_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, smartbin.converters.cli; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
