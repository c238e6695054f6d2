"""Faults in the model store: its invariants after every operation, after a crash at every step of
every operation, with two writers, and with a dangling ``current``.

The invariants (docs/deploy.md, "The store's invariants"), checked by :func:`assert_invariants`:
``current`` is absent or names a version that verifies; ``previous`` is absent or names another
version that exists; no switch is half done; nothing is left over.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from smartbin.device.config import load_config
from smartbin.device.errors import BundleError, SmartbinError
from smartbin.device.vision import store as store_module
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.store import ModelStore, bundle_tar, verify_bundle

from .conftest import MODELS, REPO, assert_one_line_error, run_smartbin

A, B, C = "colour3-int8-1", "colour3-float32-1", "colour4-int8-1"
BUNDLES = {A: MODELS / "colour3-int8", B: MODELS / "colour3-float32", C: MODELS / "colour4-int8"}


@pytest.fixture(scope="module")
def config():
    return load_config(None)  # the defaults sort can, glass, plastic


def pointers(store: ModelStore) -> tuple[str | None, str | None]:
    return store.current, store.previous


def assert_invariants(store: ModelStore, config) -> None:
    current, previous = pointers(store)
    assert not (store.dir / ".switch").exists(), "a switch was left half done"
    assert store.leftovers() == []
    if current is not None:
        verify_bundle(store.dir / current, config)
    if previous is not None:
        assert (store.dir / previous).is_dir(), f"previous names {previous}, which is gone"
        assert previous != current


def make_store(path: Path, config, installs: list[str]) -> ModelStore:
    store = ModelStore(path)
    for version in installs:
        store.install(BUNDLES[version], config)
    return store


# -- the invariants through a deploy's life ---------------------------------------------------


def test_a_version_that_failed_its_health_check_never_becomes_previous(tmp_path, config):
    store = make_store(tmp_path / "models", config, [A, B])
    assert pointers(store) == (B, A)
    switch = store.install(BUNDLES[C], config)  # deploy C ...
    assert (switch.current, switch.previous, switch.replaced) == (C, B, A)
    back = store.reject(C, switch.replaced)  # ... whose health check fails
    assert pointers(store) == (B, A) == (back.current, back.previous)
    assert_invariants(store, config)
    assert store.rollback(config).current == A and pointers(store) == (A, B)
    assert store.rollback(config).current == B and pointers(store) == (B, A)  # twice: where we started
    assert_invariants(store, config)
    assert store.clean(keep=0) == [C]  # the rejected version goes first; current and previous stay
    assert pointers(store) == (B, A)
    assert_invariants(store, config)


def test_rollback_is_an_involution_from_every_state(tmp_path, config):
    states = {
        "two models": [A, B],
        "one model (previous: the bundled default)": [A],
    }
    for name, installs in states.items():
        store = make_store(tmp_path / name.split()[0], config, installs)
        start = pointers(store)
        store.rollback(config)
        assert pointers(store) != start, name
        assert_invariants(store, config)
        store.rollback(config)
        assert pointers(store) == start, name
        assert_invariants(store, config)


def test_rejecting_from_the_bundled_default_and_after_another_change(tmp_path, config):
    store = make_store(tmp_path / "models", config, [])
    switch = store.install(BUNDLES[A], config)  # a first deploy that fails its health check
    store.reject(A, switch.replaced)
    assert pointers(store) == (None, None)
    assert_invariants(store, config)
    with pytest.raises(BundleError, match="nothing to roll back"):
        store.rollback(config)

    store.install(BUNDLES[A], config)
    switch = store.install(BUNDLES[B], config)
    store.install(BUNDLES[C], config)
    with pytest.raises(SmartbinError, match=f"{B} is no longer live .* another deploy changed the store"):
        store.reject(B, switch.replaced)  # a second deploy came in between: not ours to undo
    assert pointers(store) == (C, B)


def test_activating_from_the_bundled_default_keeps_previous_honest(tmp_path, config):
    store = make_store(tmp_path / "models", config, [A])
    store.rollback(config)  # back to the bundled default: (None, A)
    store.install(BUNDLES[B], config)
    assert pointers(store) == (B, None)  # previous is what was live before: the bundled default
    store.rollback(config)
    assert pointers(store) == (None, B)
    assert_invariants(store, config)


def test_a_previous_equal_to_current_is_dropped_before_the_next_change(tmp_path, config):
    store = make_store(tmp_path / "models", config, [A, B])
    os.unlink(store.dir / "previous")
    os.symlink(B, store.dir / "previous")  # by hand, or an old smartbin
    store.clean()
    assert pointers(store) == (B, None)
    assert_invariants(store, config)


# -- a crash at every step of every operation -------------------------------------------------


class Crash(BaseException):
    """The process died here (BaseException: no ``except OSError`` in the store catches it)."""


class CrashingOs:
    """``os`` for the store module that dies before its ``crash_at``-th change to the disk."""

    CHANGES = ("symlink", "replace", "rename", "unlink", "write", "fsync")

    def __init__(self, crash_at: int | None) -> None:
        self.crash_at, self.changes = crash_at, 0

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if name not in self.CHANGES:
            return real

        def change(*args, **kwargs):
            if self.changes == self.crash_at:
                raise Crash(name)  # and stays dead: every later change lands here again
            self.changes += 1
            return real(*args, **kwargs)

        return change


def _tar_of(version: str) -> io.BytesIO:
    return io.BytesIO(bundle_tar(load_bundle(BUNDLES[version])))


# name -> (installs that make the starting store, the operation, pointers after it)
OPERATIONS: dict[str, tuple[list[str], Callable[[ModelStore, object], object], tuple]] = {
    "install a new version": ([A, B], lambda s, c: s.install(BUNDLES[C], c), (C, B)),
    "install one already there (stream)": ([C, A, B], lambda s, c: s.install(_tar_of(C), c), (C, B)),
    "activate": ([C, A, B], lambda s, c: s.activate(C, c), (C, B)),
    "rollback": ([A, B], lambda s, c: s.rollback(c), (A, B)),
    "rollback to the bundled default": ([A], lambda s, c: s.rollback(c), (None, A)),
    "reject": ([C, A, B], lambda s, c: s.reject(B, C), (A, C)),
    "clean --keep 0": ([C, A, B], lambda s, c: s.clean(keep=0), (B, A)),
}


@pytest.mark.parametrize("name", OPERATIONS)
def test_a_crash_at_any_step_leaves_the_old_state_or_the_new_one(name, tmp_path, config, monkeypatch):
    installs, operation, after = OPERATIONS[name]
    base = make_store(tmp_path / "base", config, installs)
    before = pointers(base)

    def run(crash_at: int | None, where: Path) -> tuple[ModelStore, CrashingOs]:
        shutil.copytree(base.dir, where, symlinks=True)
        store, fake_os = ModelStore(where), CrashingOs(crash_at)
        monkeypatch.setattr(store_module, "os", fake_os)
        try:
            operation(store, config)
        finally:
            monkeypatch.setattr(store_module, "os", os)
        return store, fake_os

    store, counted = run(None, tmp_path / "no-crash")
    assert pointers(store) == after
    assert counted.changes > 0
    for step in range(counted.changes):
        where = tmp_path / f"crash-{step}"
        with pytest.raises(Crash):
            run(step, where)
        store = ModelStore(where)
        # What the daemon sees right after the crash: the old or the new current, never a broken one.
        assert store.current in (before[0], after[0]), step
        if store.current is not None:
            load_bundle(where / store.current)
        store.clean()  # the next change first finishes (or forgets) what the crash interrupted
        assert pointers(store) in (before, after), f"step {step}: {pointers(store)}"
        assert_invariants(store, config)
        if pointers(store) == before:  # the operation can simply be run again
            operation(store, config)
            assert pointers(store) == after, step


KILL_AT_STEP = """
import os, signal, sys
from pathlib import Path
from smartbin.device.vision import store
from smartbin.device.config import load_config

class KillingOs:
    changes = 0
    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in ("symlink", "replace", "rename", "unlink", "write", "fsync"):
            return real
        def change(*args, **kwargs):
            if KillingOs.changes == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)
            KillingOs.changes += 1
            return real(*args, **kwargs)
        return change

store.os = KillingOs()
store.ModelStore(sys.argv[1]).install(Path(sys.argv[2]), load_config(None))
print(KillingOs.changes)
"""


def test_killed_while_installing_at_any_step(tmp_path, config):
    """A real SIGKILL (no finally blocks, the lock dropped by the kernel) at each step of an install."""
    base = make_store(tmp_path / "base", config, [A, B])

    def install(where: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
        shutil.copytree(base.dir, where, symlinks=True)
        argv = [sys.executable, "-c", KILL_AT_STEP, str(where), str(BUNDLES[C]), str(kill_at)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    done = install(tmp_path / "whole", 10**6)
    assert done.returncode == 0, done.stderr
    steps = int(done.stdout)
    for step in (0, steps // 3, steps // 2, steps - 3, steps - 1):
        where = tmp_path / f"killed-{step}"
        result = install(where, step)
        assert result.returncode == -signal.SIGKILL, result.stderr
        store = ModelStore(where)
        assert store.current in (B, C)
        store.clean()
        assert pointers(store) in ((B, A), (C, B)), step
        assert_invariants(store, config)


# -- two writers ------------------------------------------------------------------------------


def test_an_upload_in_flight_holds_the_lock_so_clean_cannot_remove_it(tmp_path):
    """The bug: a second deploy's clean-up deleted the first one's upload while it was arriving."""
    models = tmp_path / "models"
    tar = bundle_tar(load_bundle(BUNDLES[A]))
    receiver = subprocess.Popen(
        [sys.executable, "-m", "smartbin.device.cli", "store", "install", "-", "--models-dir", str(models)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
    )
    try:
        receiver.stdin.write(tar[:1024])  # the first part of the bundle is on its way
        receiver.stdin.flush()
        uploads = []
        while not uploads and receiver.poll() is None:  # the receiver has the lock once its folder exists
            uploads = [p for p in models.glob(".upload-*")] if models.is_dir() else []
        assert uploads, receiver.stderr.read().decode()
        second = run_smartbin("store", "clean", "--models-dir", models)
        line = assert_one_line_error(second, "another smartbin", f"(pid {receiver.pid})", "try again")
        assert str(models) in line
        assert uploads[0].is_dir()  # still there
        receiver.stdin.write(tar[1024:])
        receiver.stdin.close()
        assert receiver.wait(60) == 0, receiver.stderr.read().decode()
    finally:
        receiver.kill()
        receiver.wait()
    assert ModelStore(models).current == A
    assert ModelStore(models).leftovers() == []


def test_a_stream_with_anything_but_the_bundles_files_is_refused(tmp_path, config):
    store = ModelStore(tmp_path / "models")
    bundle = load_bundle(BUNDLES[A])
    for extra in ("big-dataset.npz", "../escape", "model.tflite"):  # model.tflite twice: a duplicate
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for path in (bundle.path / "manifest.json", bundle.model_path):
                tar.add(path, arcname=path.name)
            info = tarfile.TarInfo(extra)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        out.seek(0)
        with pytest.raises(SmartbinError, match="not a file of the bundle"):
            store.install(out, config)
        assert store.current is None and store.leftovers() == [] and store.versions() == []


def test_a_bundle_folder_with_unrelated_files_installs_only_its_own(tmp_path, config):
    folder = Path(shutil.copytree(BUNDLES[A], tmp_path / "bundle"))
    (folder / "training-images.tar").write_bytes(os.urandom(1 << 20))
    (folder / "runs").mkdir()
    (folder / "runs" / "log.txt").write_text("epoch 1\n")
    store = ModelStore(tmp_path / "models")
    store.install(folder, config)
    assert sorted(p.name for p in (store.dir / A).iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.tflite",
    ]
    assert sorted(p.name for p in store.dir.iterdir() if not p.name.startswith(".")) == [A, "current"]
    assert len(bundle_tar(load_bundle(folder))) < 64 * 1024  # what deploy sends


# -- a dangling current -----------------------------------------------------------------------


def _bin_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{tmp_path}/state"\nmodels_dir = "{tmp_path}/models"\n'
        f'images_dir = "{tmp_path}/images"\nevents_db = "{tmp_path}/events.db"\n'
    )
    return config


@pytest.mark.parametrize("how", ["version folder deleted", "link to nowhere"])
def test_a_dangling_current_is_refused_not_replaced_by_the_default(tmp_path, config, how):
    cfg = _bin_config(tmp_path)
    store = make_store(tmp_path / "models", config, [A, B])
    if how == "version folder deleted":
        shutil.rmtree(store.dir / B)
    else:
        os.unlink(store.dir / "current")
        os.symlink("no-such-version", store.dir / "current")
    target = B if how == "version folder deleted" else "no-such-version"
    result = run_smartbin("config", "check", cfg)
    assert_one_line_error(
        result, f"{store.dir / 'current'} points at {target}, which is not there", "rollback"
    )
    image = next((REPO / "device" / "data" / "samples").rglob("*.jpg"))
    result = run_smartbin("classify", image, env={"SMARTBIN_CONFIG": str(cfg)})
    assert_one_line_error(result, "which is not there")

    # The fix the message names: rollback drops the dangling link and puts previous back.
    result = run_smartbin("store", "rollback", "--json", "--config", cfg)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["current"] == A
    assert pointers(store) == (A, None)
    assert_invariants(store, config)
    assert run_smartbin("config", "check", cfg).returncode == 0


def test_store_clean_refuses_a_keep_that_is_not_a_count(tmp_path):
    for keep in ("-1", "x", "1.5"):
        result = run_smartbin("store", "clean", "--keep", keep, "--models-dir", tmp_path / "models")
        assert result.returncode == 2
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "argument --keep" in errors[0] and keep in errors[0], result.stderr
    assert not (tmp_path / "models").exists()


def test_store_list_into_a_reader_that_left_is_quiet(tmp_path):
    """`smartbin store list | head` once head has gone: exit 1, nothing on stderr (no 'Broken pipe' error)."""
    make_store(tmp_path / "models", load_config(None), [A])
    read, write = os.pipe()
    os.close(read)  # every write fails with EPIPE
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "smartbin.device.cli",
                "store",
                "list",
                "--models-dir",
                str(tmp_path / "models"),
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, "")


def test_a_store_under_a_file_says_not_a_directory_without_blaming_permissions(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_smartbin("store", "rollback", "--models-dir", tmp_path / "file" / "models")
    line = assert_one_line_error(result, str(tmp_path / "file"))
    assert "member of the model store's group" not in line
