"""Faults around ``smartbin deploy`` and ``bootstrap``, against the real sshd of tests/deploy/conftest.py.

A hung bin at each step (a remote smartbin that never answers), a bin that never speaks SSH, two
deploys to one bin, a failed health check and what the store's pointers are after it, a bundle
folder with unrelated large files, a bootstrap whose smartbin cannot start, and bad numbers.
Each case ends in correct behaviour or one line per bin, and leaves no process on either side.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..deploy.conftest import (  # noqa: F401 (ssh_tools, sshd: the session's sshd fixtures)
    FIXTURE_MODELS,
    assert_nothing_left,
    build_fleet,
    ssh_tools,
    sshd,
)
from ..deploy.test_bootstrap import stub_wheel
from .conftest import assert_one_line_error, run_smartbin

C3 = FIXTURE_MODELS / "colour3-int8"
C3F = FIXTURE_MODELS / "colour3-float32"
C4 = FIXTURE_MODELS / "colour4-int8"


@pytest.fixture(name="fleet")
def one_bin(sshd, tmp_path):  # noqa: F811 (the fixture imported above)
    """One bin on the deploy tests' sshd (tests/deploy/conftest.py)."""
    return build_fleet(sshd, tmp_path, 1)


def deploy(fleet, *args, smartbin=None, reload=None, health="20", extra=()) -> subprocess.CompletedProcess:
    argv = ["deploy", *args, *[b.alias for b in fleet.bins], "--ssh-config", fleet.ssh_config]
    argv += ["--remote-smartbin", smartbin or fleet.smartbin, "--health-timeout", health, *extra]
    argv += ["--reload-command", fleet.reload_command() if reload is None else reload]
    return run_smartbin(*argv)


def line_of(result: subprocess.CompletedProcess, host: str = "bin1") -> str:
    (line,) = [x for x in result.stdout.splitlines() if x.startswith(f"{host}: ")]
    return line


def hanging_smartbin(fleet, tmp_path: Path, on: str) -> tuple[Path, str]:
    """The bin's smartbin, except that a command containing ``on`` never answers (``install``: the
    real one receives the first KiB of the bundle, then the stream stalls)."""
    marker = f"smartbin-hangs-{tmp_path.name}"
    script = tmp_path / "hung" / "smartbin"
    script.parent.mkdir()
    hang = shlex.join([sys.executable, "-c", "import time; time.sleep(600)", marker])
    if on == "install":
        hang = f'sh -c "head -c 1024; exec {hang}" | {fleet.smartbin} "$@"; exit $?'
    else:
        hang = f"exec {hang}"
    script.write_text(f'#!/bin/sh\ncase " $* " in *" {on} "*) {hang};; esac\nexec {fleet.smartbin} "$@"\n')
    script.chmod(0o755)
    return script, marker


# -- a hung bin -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["clean", "install", "status"])
def test_a_bin_that_never_answers_ends_the_deploy_and_leaves_nothing_behind(fleet, tmp_path, step):
    b = fleet.bins[0]
    assert deploy(fleet, str(C3)).returncode == 0
    smartbin, marker = hanging_smartbin(fleet, tmp_path, step)
    start = time.monotonic()
    result = deploy(fleet, str(C4), smartbin=smartbin, health="3", extra=["--command-timeout", "2"])
    took = time.monotonic() - start
    assert result.returncode == 1
    line = line_of(result)
    if step == "status":  # after the switch: the health check gets no answer, the switch is undone
        assert line.startswith("bin1: rolled back: no answer from bin1 after 2 s (smartbin status --json)"), (
            line
        )
        assert "; back to colour3-int8-1 (reloaded)" in line
    else:
        assert (
            line.startswith("bin1: timed out: no answer from bin1 after ")
            and f"(smartbin store {step})" in line
        )
    assert took < 40, f"{took:.0f} s"  # not the 10 minutes it used to be
    assert b.current == "colour3-int8-1" and not (b.models / "previous").is_symlink()  # as before
    assert_nothing_left(marker, str(fleet.ssh_config))
    if step != "install":
        return
    # The install stopped on the bin left its upload: the next deploy cleans it and goes through.
    assert [p for p in os.listdir(b.models) if p.startswith(".upload-")]
    result = deploy(fleet, str(C4))
    assert result.returncode == 0, result.stdout
    assert b.current == "colour4-int8-1"
    assert not [p for p in os.listdir(b.models) if p.startswith(".upload-")]


def test_a_reload_that_never_returns_is_stopped_and_rolled_back(fleet, tmp_path):
    assert deploy(fleet, str(C3)).returncode == 0
    marker = f"reload-hangs-{tmp_path.name}"
    reload = shlex.join([sys.executable, "-c", "import time; time.sleep(600)", marker])
    result = deploy(fleet, str(C4), reload=reload, extra=["--command-timeout", "2"])
    assert result.returncode == 1
    line = line_of(result)
    assert line.startswith("bin1: rolled back: no answer from bin1 after 2 s"), line
    assert "back to colour3-int8-1, but the reload failed too: no answer from bin1 after 2 s" in line
    assert fleet.bins[0].current == "colour3-int8-1"
    assert_nothing_left(marker, str(fleet.ssh_config))


def test_a_bin_that_accepts_tcp_but_never_speaks_ssh(fleet, tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever answers
        cfg = fleet.write_ssh_config(tmp_path / "ssh_config_silent", {}, port=silent.getsockname()[1])
        start = time.monotonic()
        result = run_smartbin("deploy", C3, "silent", "--ssh-config", cfg, "--connect-timeout", "2")
        took = time.monotonic() - start
    assert result.returncode == 1
    assert line_of(result, "silent").startswith(
        "silent: unreachable: cannot reach silent: connection timed out"
    )
    assert took < 20, f"{took:.0f} s"
    assert_nothing_left(str(cfg))


# -- two deploys to one bin -------------------------------------------------------------------

SLOW_UPLOAD = """
import pathlib, subprocess, sys, time
models, signals, real = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]
if "install" not in args:
    sys.exit(subprocess.run([real, *args]).returncode)
data = sys.stdin.buffer.read()
proc = subprocess.Popen([real, *args], stdin=subprocess.PIPE)
proc.stdin.write(data[:1024])  # the first part is on its way ...
proc.stdin.flush()
deadline = time.monotonic() + 60
while not list(models.glob(".upload-*")) and time.monotonic() < deadline:
    time.sleep(0.05)
(signals / "uploading").touch()
while not (signals / "go").exists() and time.monotonic() < deadline:  # ... until the test says go
    time.sleep(0.05)
proc.stdin.write(data[1024:])
proc.stdin.close()
sys.exit(proc.wait())
"""


def test_a_second_deploy_while_the_first_uploads_is_refused_and_the_first_goes_through(fleet, tmp_path):
    b = fleet.bins[0]
    assert deploy(fleet, str(C3)).returncode == 0
    signals = tmp_path / "signals"
    signals.mkdir()
    slow = tmp_path / "smartbin-slow-upload"
    slow.write_text(
        f"#!/bin/sh\nexec {shlex.join([sys.executable, '-c', SLOW_UPLOAD, str(b.models), str(signals)])} "
        f'{fleet.smartbin} "$@"\n'
    )
    slow.chmod(0o755)
    argv = [sys.executable, "-m", "smartbin.device.cli", "deploy", str(C4), "bin1", "--ssh-config"]
    argv += [
        str(fleet.ssh_config),
        "--remote-smartbin",
        str(slow),
        "--reload-command",
        fleet.reload_command(),
    ]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (signals / "uploading").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (signals / "uploading").exists(), first.communicate()
        second = deploy(fleet, str(C3F))
        line = line_of(second)
        assert second.returncode == 1
        assert line.startswith("bin1: refused: another smartbin (pid "), line
        assert f"is changing the model store {b.models}" in line and "try again when it is done" in line
        (signals / "go").touch()
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, out + err
    assert out.startswith("bin1: deployed: colour4-int8-1 is live"), out
    assert b.current == "colour4-int8-1" and os.readlink(b.models / "previous") == "colour3-int8-1"
    assert not [p for p in os.listdir(b.models) if p.startswith(".") and p != ".lock"]


# -- the store's pointers through deploys -----------------------------------------------------


def test_after_a_failed_health_check_rollback_never_brings_the_rejected_model_back(fleet):
    b = fleet.bins[0]
    assert deploy(fleet, str(C3)).returncode == 0
    assert deploy(fleet, str(C3F)).returncode == 0
    # A reload the daemon never sees; --keep 0 must not prune what the rollback puts back.
    failed = deploy(fleet, str(C4), reload="true", health="2", extra=["--keep", "0"])
    assert failed.returncode == 1
    assert line_of(failed).startswith("bin1: rolled back: health check failed after 2 s")
    assert b.current == "colour3-float32-1"
    assert os.readlink(b.models / "previous") == "colour3-int8-1"  # not colour4-int8-1, which failed
    once = deploy(fleet, "--rollback")
    assert line_of(once).startswith("bin1: rolled back: colour3-int8-1 is live"), once.stdout
    twice = deploy(fleet, "--rollback")
    assert line_of(twice).startswith("bin1: rolled back: colour3-float32-1 is live"), twice.stdout
    assert (b.current, os.readlink(b.models / "previous")) == ("colour3-float32-1", "colour3-int8-1")
    listing = json.loads(run_smartbin("store", "list", "--json", "--config", b.config).stdout)
    assert listing["leftovers"] == [] and not listing["interrupted_switch"]
    # Once a new model is confirmed, --keep 0 leaves only current and previous.
    assert deploy(fleet, str(C4), extra=["--keep", "0"]).returncode == 0
    assert sorted(p.name for p in b.models.iterdir() if not p.name.startswith(".")) == [
        "colour3-float32-1",
        "colour4-int8-1",
        "current",
        "previous",
    ]


def test_a_failed_first_deploy_leaves_the_bin_as_it_was(fleet):
    b = fleet.bins[0]
    failed = deploy(fleet, str(C3), reload="true", health="2")
    assert failed.returncode == 1 and "back to the bundled default model" in line_of(failed)
    assert b.current is None and not (b.models / "previous").is_symlink()
    result = deploy(fleet, "--rollback")
    assert result.returncode == 1 and "nothing to roll back" in line_of(result)


def test_a_damaged_copy_of_the_live_model_is_repaired_without_touching_the_pointers(fleet):
    b = fleet.bins[0]
    assert deploy(fleet, str(C3)).returncode == 0
    model = b.models / "colour3-int8-1" / "model.tflite"
    model.write_bytes(model.read_bytes()[:-10])  # the SD card lost the end of it
    result = deploy(fleet, str(C3))
    assert result.returncode == 0, result.stdout
    assert line_of(result).startswith("bin1: deployed: colour3-int8-1 is live")
    assert model.read_bytes() == (C3 / "model.tflite").read_bytes()
    assert b.current == "colour3-int8-1" and not (b.models / "previous").is_symlink()


# -- degenerate inputs ------------------------------------------------------------------------


def test_a_bundle_folder_with_large_unrelated_files_sends_only_the_bundle(fleet, tmp_path):
    folder = Path(shutil.copytree(C3, tmp_path / "bundle"))
    with open(folder / "all-training-photos.tar", "wb") as f:
        f.truncate(300 << 20)  # 300 MB (sparse): at 50 kB/s it alone would take 100 minutes
    (folder / "runs").mkdir()
    (folder / "runs" / "notes.txt").write_text("epoch 1\n")
    result = deploy(fleet, str(folder))
    assert result.returncode == 0, result.stdout
    version = fleet.bins[0].models / "colour3-int8-1"
    assert sorted(p.name for p in version.iterdir()) == ["labels.txt", "manifest.json", "model.tflite"]


def test_bootstrap_does_not_say_done_when_smartbin_cannot_start(fleet, tmp_path):
    prefix = tmp_path / "root"
    argv = ["bootstrap", "bin1", "--prefix", prefix, "--remote-python", sys.executable, "--no-deps"]
    argv += ["--skip-apt", "--skip-user", "--skip-systemd", "--ssh-config", fleet.ssh_config]
    broken = {
        "import numpy_that_is_not_there": "ModuleNotFoundError: No module named 'numpy_that_is_not_there'",
        "raise SystemExit('smartbin: error: config.toml: gpio.pin_factory: unknown')": (
            "cannot start: config.toml: gpio.pin_factory: unknown;"
        ),
    }
    for i, (main, why) in enumerate(broken.items()):
        (tmp_path / str(i)).mkdir()
        result = run_smartbin(*argv, "--wheel", stub_wheel(tmp_path / str(i), main))
        assert result.returncode == 1
        (error,) = [x for x in result.stderr.splitlines() if x.startswith("smartbin: error:")]
        assert error.startswith(
            "smartbin: error: bootstrap of bin1 failed: the installed smartbin cannot start: "
        )
        assert why in error and "run bootstrap again" in error
        assert "bootstrapped" not in result.stdout
        assert not (prefix / "etc/systemd/system/smartbin.service").exists()  # the service step never ran

    result = run_smartbin(*argv, "--wheel", stub_wheel(tmp_path))
    assert result.returncode == 0, result.stderr
    assert re.search(r"check +ok +smartbin starts and accepts ", result.stdout), result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("bin1: bootstrapped")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--keep", "-1"),
        ("--health-timeout", "0"),
        ("--health-timeout", "-5"),
        ("--health-timeout", "nan"),
        ("--command-timeout", "inf"),
        ("--command-timeout", "0"),
        ("--connect-timeout", "0"),
        ("--jobs", "0"),
        ("--keep", "two"),
    ],
)
def test_bad_numbers_are_refused_before_anything_happens(option, value, tmp_path):
    result = run_smartbin("deploy", C3, "nosuchbin", option, value, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and option in errors[0] and value in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ("deploy", "--ssh-config", "/no/such/ssh_config", C3, "bin1"),
            "--ssh-config /no/such/ssh_config: no such file",
        ),
        (
            ("models", "--ssh-config", "/no/such/ssh_config", "bin1"),
            "--ssh-config /no/such/ssh_config: no such file",
        ),
        (("deploy", "--rollback", C3, "bin1"), f"{C3} is a model bundle; --rollback takes only hosts"),
    ],
)
def test_mistakes_that_would_be_blamed_on_each_bin_are_one_line_first(argv, says, tmp_path):
    result = run_smartbin(*argv, cwd=tmp_path)
    assert_one_line_error(result, says)
    assert result.stdout == ""
