"""The model store on a bin (smartbin.device.store), without SSH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from smartbin.device.config import load_config
from smartbin.device.errors import BundleError, SmartbinError
from smartbin.device.store import ModelStore, upload_name

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


@pytest.fixture
def config():
    return load_config(None)  # the defaults sort can, glass, plastic


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def upload(store: ModelStore, name: str) -> str:
    store.dir.mkdir(parents=True, exist_ok=True)
    bundle_version = {"colour3-int8": "colour3-int8-1", "colour3-float32": "colour3-float32-1"}.get(
        name, name
    )
    temp = upload_name(bundle_version)
    shutil.copytree(FIXTURE_MODELS / name, store.dir / temp)
    return temp


def test_install_switches_current_and_previous(store, config):
    first = store.install_upload(upload(store, "colour3-int8"), config)
    assert (first.action, first.current, first.previous) == ("activated", "colour3-int8-1", None)
    second = store.install_upload(upload(store, "colour3-float32"), config)
    assert (second.current, second.previous) == ("colour3-float32-1", "colour3-int8-1")
    assert os.readlink(store.dir / "current") == "colour3-float32-1"  # relative: the store can move
    assert store.leftovers() == []
    again = store.install_upload(upload(store, "colour3-float32"), config)
    assert again.action == "already-current" and store.leftovers() == []


def test_a_damaged_upload_never_goes_live_and_is_removed(store, config):
    store.install_upload(upload(store, "colour3-int8"), config)
    name = upload(store, "colour3-float32")
    model = store.dir / name / "model.tflite"
    model.write_bytes(model.read_bytes()[:-100])  # the copy stopped early
    with pytest.raises(BundleError, match="corrupt or truncated"):
        store.install_upload(name, config)
    assert store.current == "colour3-int8-1"
    assert not (store.dir / name).exists() and not (store.dir / "colour3-float32-1").exists()


def test_the_senders_checksum_must_match(store, config):
    with pytest.raises(BundleError, match="is not the one sent"):
        store.install_upload(upload(store, "colour3-int8"), config, expected_sha256="0" * 64)
    assert store.current is None


def test_same_version_with_another_model_is_refused(store, config, tmp_path):
    store.install_upload(upload(store, "colour3-int8"), config)
    name = upload(store, "colour3-float32")
    manifest = store.dir / name / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"colour3-float32-1"', '"colour3-int8-1"'))
    with pytest.raises(BundleError, match="already on this bin with a different model"):
        store.install_upload(name, config)


def test_rollback_swaps_and_the_first_rollback_returns_to_the_default(store, config):
    with pytest.raises(BundleError, match="nothing to roll back"):
        store.rollback(config)
    store.install_upload(upload(store, "colour3-int8"), config)
    store.install_upload(upload(store, "colour3-float32"), config)
    back = store.rollback(config)
    assert (back.current, back.previous) == ("colour3-int8-1", "colour3-float32-1")
    forward = store.rollback(config)
    assert (forward.current, forward.previous) == ("colour3-float32-1", "colour3-int8-1")

    fresh = ModelStore(store.dir.parent / "fresh")
    fresh.install_upload(upload(fresh, "colour3-int8"), config)
    gone = fresh.rollback(config)
    assert gone.current is None and fresh.current is None and fresh.previous == "colour3-int8-1"


def test_clean_removes_leftovers_and_prunes_all_but_current_previous_and_keep(store, config):
    for name in ("colour3-int8", "colour3-float32", "colour4-int8"):
        store.install_upload(upload(store, name), config)
    (store.dir / ".upload-x-1-deadbeef").mkdir()
    (store.dir / ".link-current-0000").symlink_to("nowhere")
    removed = store.clean(keep=0)
    assert sorted(removed) == [".link-current-0000", ".upload-x-1-deadbeef", "colour3-int8-1"]
    assert [v.version for v in store.versions()] == ["colour3-float32-1", "colour4-int8-1"]
    assert store.current == "colour4-int8-1"


def test_unsafe_names_are_refused(store, config):
    for bad in ("../x", "a;rm -rf /", ".upload-$(id)", "current"):
        with pytest.raises(SmartbinError):
            store.install_upload(bad, config) if bad.startswith(".") else store.activate(bad, config)
    with pytest.raises(BundleError):
        upload_name("v1/../../etc")


def test_one_change_at_a_time(store, config):
    with store.locked(), pytest.raises(SmartbinError, match="another smartbin is changing"):
        store.install_upload(upload(store, "colour3-int8"), config)


def test_store_command_errors_are_one_line(tmp_path, capsys):
    from smartbin.device.cli import main

    (tmp_path / "file").write_text("not a folder")
    assert main(["store", "clean", "--models-dir", str(tmp_path / "file" / "models")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smartbin: error: ") and "Not a directory" in err and err.count("\n") == 1
