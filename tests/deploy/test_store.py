"""The model store on a bin (smartbin.device.vision.store), without SSH."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from smartbin.device.config import load_config
from smartbin.device.errors import BundleError, SmartbinError
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.store import ModelStore, bundle_tar

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
C3 = FIXTURE_MODELS / "colour3-int8"
C3F = FIXTURE_MODELS / "colour3-float32"


@pytest.fixture
def config():
    return load_config(None)  # the defaults sort can, glass, plastic


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundles" / bundle.name))


def test_install_switches_current_and_previous(store, config):
    first = store.install(C3, config)
    assert (first.action, first.current, first.previous) == ("activated", "colour3-int8-1", None)
    second = store.install(C3F, config)
    assert (second.current, second.previous) == ("colour3-float32-1", "colour3-int8-1")
    assert os.readlink(store.dir / "current") == "colour3-float32-1"  # relative: the store can move
    assert store.leftovers() == []
    again = store.install(C3F, config)
    assert again.action == "already-current" and store.leftovers() == []


def test_a_damaged_bundle_never_goes_live_and_leaves_nothing(store, config, tmp_path):
    store.install(C3, config)
    damaged = copy(C3F, tmp_path)
    model = damaged / "model.tflite"
    model.write_bytes(model.read_bytes()[:-100])  # the copy stopped early
    with pytest.raises(BundleError, match="corrupt or truncated"):
        store.install(damaged, config)
    assert store.current == "colour3-int8-1"
    assert store.leftovers() == [] and not (store.dir / "colour3-float32-1").exists()


def test_a_truncated_stream_never_goes_live_and_leaves_nothing(store, config):
    store.install(C3, config)
    tar = bundle_tar(load_bundle(C3F))
    with pytest.raises(BundleError, match="the upload stopped before its end"):
        store.install(io.BytesIO(tar[: len(tar) // 2]), config)
    assert store.current == "colour3-int8-1" and store.leftovers() == []
    assert store.install(io.BytesIO(tar), config).current == "colour3-float32-1"


def test_the_senders_checksum_must_match(store, config):
    with pytest.raises(BundleError, match="is not the one sent"):
        store.install(C3, config, expected_sha256="0" * 64)
    assert store.current is None


def test_same_version_with_another_model_is_refused(store, config, tmp_path):
    store.install(C3, config)
    other = copy(C3F, tmp_path)
    manifest = other / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"colour3-float32-1"', '"colour3-int8-1"'))
    with pytest.raises(BundleError, match="already on this bin with a different model"):
        store.install(other, config)


def test_rollback_swaps_and_the_first_rollback_returns_to_the_default(store, config):
    with pytest.raises(BundleError, match="nothing to roll back"):
        store.rollback(config)
    store.install(C3, config)
    store.install(C3F, config)
    back = store.rollback(config)
    assert (back.current, back.previous) == ("colour3-int8-1", "colour3-float32-1")
    forward = store.rollback(config)
    assert (forward.current, forward.previous) == ("colour3-float32-1", "colour3-int8-1")

    fresh = ModelStore(store.dir.parent / "fresh")
    fresh.install(C3, config)
    gone = fresh.rollback(config)
    assert gone.current is None and fresh.current is None and fresh.previous == "colour3-int8-1"
    again = fresh.rollback(config)
    assert (again.current, again.previous) == ("colour3-int8-1", None)


def test_clean_removes_leftovers_and_prunes_all_but_current_previous_and_keep(store, config):
    for name in ("colour3-int8", "colour3-float32", "colour4-int8"):
        store.install(FIXTURE_MODELS / name, config)
    (store.dir / ".upload-x-1-deadbeef").mkdir()
    (store.dir / ".link-current-0000").symlink_to("nowhere")
    removed = store.clean(keep=0)
    assert sorted(removed) == [".link-current-0000", ".upload-x-1-deadbeef", "colour3-int8-1"]
    assert [v.version for v in store.versions()] == ["colour3-float32-1", "colour4-int8-1"]
    assert store.current == "colour4-int8-1"


def test_unsafe_names_are_refused(store, config):
    for bad in ("../x", "a;rm -rf /", ".upload-$(id)", "current"):
        with pytest.raises(SmartbinError):
            store.activate(bad, config)


def test_one_change_at_a_time(store, config):
    with (
        store.locked(),
        pytest.raises(SmartbinError, match=rf"another smartbin \(pid {os.getpid()}\) is changing"),
    ):
        store.install(C3, config)


def test_store_command_errors_are_one_line(tmp_path, capsys):
    from smartbin.device.cli import main

    (tmp_path / "file").write_text("not a folder")
    assert main(["store", "clean", "--models-dir", str(tmp_path / "file" / "models")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smartbin: error: ") and "models: not a directory" in err and err.count("\n") == 1
    for command in (["list"], ["install", str(C3)]):  # the store itself is a file
        assert main(["store", *command, "--models-dir", str(tmp_path / "file")]) == 1
        err = capsys.readouterr().err
        assert (
            err
            == f"smartbin: error: {tmp_path / 'file'}: not a directory; --models-dir must name the model store's folder\n"
        )
