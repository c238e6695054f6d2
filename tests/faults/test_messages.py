"""Issue 8, class 11: a user's mistake ends in one line, never a traceback, in every command.

Each case runs the real ``smartbin`` in a subprocess (``run_smartbin`` fails the test on any
traceback). Cases by class: paths that are files, folders, missing or under a file; numbers
out of range; numpy reprs in messages; a bad ``--name`` found before converting; Ctrl-C and
SIGTERM; native libraries' chatter on the terminal. Only the SIGTERM-during-train case imports
TensorFlow.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.errors import os_error_message, os_error_reason
from smartbin.device.vision import native

from .conftest import MODELS, REPO, assert_one_line_error, run_smartbin

SAMPLE = REPO / "device" / "data" / "samples" / "can" / "metal143.jpg"
BUNDLE = MODELS / "colour3-int8"


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """A regular file, a folder, a missing path and a path under the file (NotADirectoryError as root)."""
    (tmp_path / "file").write_text("not a folder, not an image\n")
    (tmp_path / "folder").mkdir()
    return {
        "file": tmp_path / "file",
        "folder": tmp_path / "folder",
        "missing": tmp_path / "missing",
        "under_file": tmp_path / "file" / "x",
    }


# --- the shared OSError phrases -----------------------------------------------------------


def _os_error(action) -> OSError:
    with pytest.raises(OSError) as exc:
        action()
    return exc.value


def test_each_os_error_gets_its_own_phrase(paths):
    assert os_error_reason(_os_error(paths["missing"].read_bytes)) == "no such file or folder"
    assert os_error_reason(_os_error(paths["folder"].read_bytes)) == "is a directory"
    assert os_error_reason(_os_error(paths["under_file"].read_bytes)) == "not a directory"
    assert os_error_reason(_os_error(lambda: os.mkdir(paths["file"]))) == "already exists"
    assert os_error_reason(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    message = os_error_message(_os_error(lambda: os.listdir(paths["file"])))
    assert message == f"{paths['file']}: not a directory" and "Errno" not in message


def test_an_unforeseen_os_error_is_one_line_and_debug_shows_it(monkeypatch, capsys):
    from smartbin.device.commands import bin as commands

    def broken(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/smartbin/status.json")

    monkeypatch.setattr(commands, "cmd_status", broken)
    assert main(["status"]) == 1
    assert capsys.readouterr().err == "smartbin: error: /srv/smartbin/status.json: permission denied\n"
    with pytest.raises(PermissionError):
        main(["--debug", "status"])


# --- paths that are files, folders, missing, or under a file -----------------------------


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("missing", "no such file"),
        ("folder", "is a directory"),
        ("under_file", "not a directory"),
        ("file", "not an image"),
    ],
)
def test_classify_says_why_an_image_cannot_be_read(paths, kind, phrase):
    result = run_smartbin("classify", paths[kind], "--model", BUNDLE)
    line = assert_one_line_error(result, str(paths[kind]), phrase)
    assert line.startswith("smartbin: error: cannot read image")


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_an_output_folder_that_is_a_file_or_under_one_is_refused_first(paths, kind):
    """Every command that writes a folder: one line naming the option, nothing created."""
    out = paths[kind]
    commands = [
        ("simulate", "--fast", "--state-dir", out),
        ("collect", "bin.invalid", "--out", out),
        ("evaluate", BUNDLE, REPO / "device" / "data" / "samples", "--out", out),
        ("train", paths["folder"], "--out", out),
        ("convert", paths["folder"], "--out", out),
        ("export-serving", paths["folder"], "--out", out),
    ]
    for argv in commands:
        option = "--state-dir" if argv[0] == "simulate" else "--out"
        line = assert_one_line_error(run_smartbin(*argv), str(out), "not a directory", option)
        assert "Errno" not in line
    assert paths["file"].read_text() == "not a folder, not an image\n"
    assert sorted(p.name for p in paths["folder"].iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [("missing", "no such folder"), ("file", "not a directory"), ("under_file", "not a directory")],
)
def test_input_folders_say_which_mistake_it_is(paths, kind, phrase):
    bad = paths[kind]
    for argv in (
        ("train", bad, "--out", paths["folder"] / "run"),
        ("convert", bad, "--out", paths["folder"] / "bundle"),
        ("export-serving", bad, "--out", paths["folder"] / "saved"),
        ("evaluate", BUNDLE, bad),
    ):
        assert_one_line_error(run_smartbin(*argv), str(bad), phrase)
    assert sorted(p.name for p in paths["folder"].iterdir()) == []


def test_a_bundle_or_photo_folder_under_a_file_is_not_a_directory(paths):
    bad = paths["under_file"]
    for argv in (
        ("classify", SAMPLE, "--model", bad),
        ("evaluate", bad, paths["folder"]),
        ("simulate", "--fast", "--images", bad),
        ("deploy", bad, "bin.invalid"),
        ("store", "verify", bad),
    ):
        assert_one_line_error(run_smartbin(*argv), str(bad), "not a directory")


def test_a_run_directory_whose_files_are_folders(tmp_path):
    run = tmp_path / "run"
    (run / "run.json").mkdir(parents=True)
    (run / "model.keras").write_bytes(b"never read: run.json is checked first")
    line = assert_one_line_error(run_smartbin("convert", run, "--out", tmp_path / "b"), "run.json")
    assert "is a directory" in line and not (tmp_path / "b").exists()


# --- numbers, checked as arguments --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (("classify", SAMPLE, "--threads", "0"), ("--threads", "1 or more")),
        (("classify", SAMPLE, "--threads", "-3"), ("--threads", "1 or more")),
        (("classify", SAMPLE, "--threads", "two"), ("--threads", "whole number")),
        (
            ("classify", SAMPLE, "--threads", "99999999999"),
            ("--threads", "1-64"),
        ),  # not the interpreter's overflow
        (("evaluate", BUNDLE, REPO, "--threads", "65"), ("--threads", "1-64")),
        (("evaluate", BUNDLE, REPO, "--threads", "0"), ("--threads",)),
        (("convert", "RUN", "--out", "B", "--threads", "-1"), ("--threads",)),
        (("train", "DATA", "--out", "RUN", "--batch-size", "0"), ("--batch-size",)),
        (("train", "DATA", "--out", "RUN", "--head-lr", "nan"), ("--head-lr", "above 0")),
        (("train", "DATA", "--out", "RUN", "--fine-tune-epochs", "-1"), ("--fine-tune-epochs",)),
        (("events", "--limit", "many"), ("--limit",)),
        (("events", "--limit", "-5"), ("--limit", "0 or more")),
        (("events", "--limit", str(10**22)), ("--limit", "below 2**63")),  # not SQLite's OverflowError
        (("simulate", "--repeat", str(10**20)), ("--repeat", "below 2**63")),  # not itertools' OverflowError
        (("simulate", "--repeat", "0"), ("--repeat", "1 or more")),
        (("simulate", "--images", ""), ("--images", "got an empty one")),  # not the current folder
        (("classify", ""), ("IMAGE", "got an empty one")),
        (("convert", "", "--out", "B"), ("RUN_DIR", "got an empty one")),
        (("bogus-command",), ("invalid choice",)),
        ((), ("COMMAND",)),
    ],
)
def test_a_bad_number_or_command_is_one_argument_error(argv, fragments):
    result = run_smartbin(*argv)
    assert result.returncode == 2
    line = assert_one_line_error(result, *fragments)
    assert "cannot be loaded" not in line and "--help" in line  # not blamed on the model
    assert "usage:" not in result.stderr


def test_numbers_out_of_range_are_one_line(paths):
    for option, value in (
        ("--dropout", "1.5"),
        ("--mixup", "nan"),
        ("--label-smoothing", "1"),
        ("--seed", "-1"),
    ):
        argv = ("train", paths["folder"], "--out", paths["missing"], option, value)
        assert_one_line_error(run_smartbin(*argv), option, "out of range")
    assert not paths["missing"].exists()


class _Enough(Exception):
    pass


def test_a_huge_repeat_starts_at_once_instead_of_running_out_of_memory(tmp_path):
    """``simulate --repeat 10**15`` sorts item after item (Ctrl-C stops it), never lists them all first."""
    from smartbin.device.commands.simulate import simulate
    from smartbin.device.config import parse_config

    seen = []

    def three_then_stop(item):
        seen.append(item.image.name)
        if len(seen) == 3:
            raise _Enough

    with pytest.raises(_Enough):
        simulate(
            parse_config({}),
            images=SAMPLE,
            model=BUNDLE,
            fast=True,
            repeat=10**15,
            state_dir=tmp_path,
            on_item=three_then_stop,
        )
    assert seen == [SAMPLE.name] * 3


# --- numpy reprs --------------------------------------------------------------------------


def test_a_shape_mismatch_prints_plain_numbers(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(MODELS / "colour3-float32", bundle)
    manifest = bundle / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"height": 32', '"height": 48'))
    line = assert_one_line_error(run_smartbin("classify", SAMPLE, "--model", bundle), "(1, 32, 32, 3)")
    assert "int32" not in line


# --- a bad --name before converting -------------------------------------------------------


@pytest.mark.parametrize("name", ["bad/name", "../up", "x" * 70, ""])
def test_a_bad_bundle_name_is_refused_before_the_run_is_even_read(tmp_path, name):
    """The run directory does not exist: the name is checked first, long before any conversion."""
    result = run_smartbin("convert", tmp_path / "no-run", "--out", tmp_path / "b", "--name", name)
    assert_one_line_error(result, "--name")
    assert "INFO" not in result.stderr and not (tmp_path / "b").exists()


# --- Ctrl-C and SIGTERM -------------------------------------------------------------------


def _signal_after_first_item(sig: int, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "smartbin.device.cli", "simulate", "--fast", "--repeat", "1000", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # the first item is through
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_ctrl_c_says_what_was_left_and_exits_130(tmp_path):
    result = _signal_after_first_item(signal.SIGINT)
    assert (result.returncode, result.stderr) == (130, "smartbin: interrupted; nothing was kept\n")
    state = tmp_path / "state"
    result = _signal_after_first_item(signal.SIGINT, "--state-dir", str(state))
    assert result.returncode == 130
    assert result.stderr == f"smartbin: interrupted; the items so far are in {state}\n"
    assert (state / "events.db").is_file()


def test_sigterm_is_an_interrupt_too_and_exits_143():
    result = _signal_after_first_item(signal.SIGTERM)
    assert (result.returncode, result.stderr) == (143, "smartbin: terminated; nothing was kept\n")


def test_sigterm_during_train_removes_the_staging_folder(tmp_path):
    """The one case here that starts TensorFlow; it also shows its start-up lines stay hidden."""
    from smartbin.training.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    out = tmp_path / "runs" / "run"
    argv = [sys.executable, "-m", "smartbin.device.cli", "train", str(data), "--out", str(out)]
    argv += ["--backbone", "tiny_cnn", "--weights", "none", "--input-size", "32", "--quiet"]
    argv += ["--no-cache-features", "--head-epochs", "100000", "--patience", "100000"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".run.partial-*")):  # training has started writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 143
    assert (
        err.splitlines()[-1] == f"smartbin: terminated; {out} left as it was (the unfinished run was removed)"
    )
    assert list(out.parent.iterdir()) == []
    for noise in ("oneDNN", "absl", "cpu_feature_guard", "I0000"):
        assert noise not in err


# --- native libraries' chatter ------------------------------------------------------------


@pytest.fixture
def corrupt_jpeg(tmp_path: Path) -> Path:
    """A JPEG with garbage in its data: it decodes, and libjpeg complains on fd 2."""
    data = bytearray(SAMPLE.read_bytes())
    data[5000:5100] = b"A" * 100
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data))
    return path


def test_libjpeg_and_opencv_warnings_stay_off_the_terminal(corrupt_jpeg, paths):
    result = run_smartbin("classify", corrupt_jpeg, paths["missing"], "--model", BUNDLE)
    assert result.stdout.startswith(f"{corrupt_jpeg}: ")
    [line] = result.stderr.splitlines()  # nothing but the error about the missing one
    assert line.startswith(f"smartbin: error: cannot read image {paths['missing']}: no such file")
    verbose = run_smartbin("-v", "classify", corrupt_jpeg, "--model", BUNDLE)
    assert "Corrupt JPEG data" in verbose.stderr  # -v lets it through, for whoever debugs


def test_native_stderr_silenced_nests_across_threads_and_restores_fd_2(capfd, monkeypatch):
    monkeypatch.setattr(native, "_shown", False)  # as without -v (main() in this process may have set it)

    def chatter(text: bytes, started: threading.Event, release: threading.Event) -> None:
        with native.native_stderr_silenced():
            started.set()
            release.wait(10)
            os.write(2, text)

    started, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=chatter, args=(b"worker noise\n", started, release))
    worker.start()
    assert started.wait(10)
    with native.native_stderr_silenced():
        os.write(2, b"main noise\n")
    release.set()  # the worker still silences after the main thread's block ended
    worker.join(10)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_show_native_output_lets_it_through(capfd, monkeypatch):
    monkeypatch.setattr(native, "_shown", True)
    with native.native_stderr_silenced():
        os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_log_lines_of_other_threads_survive_a_silenced_decode(capfd, monkeypatch):
    monkeypatch.setattr(native, "_shown", False)
    # sys.stderr on fd 2 itself, as in a real process (capfd's own sys.stderr writes past fd 2)
    monkeypatch.setattr(sys, "stderr", open(2, "w", buffering=1, closefd=False))  # noqa: SIM115
    handler = logging.StreamHandler(native.python_stderr)
    logger = logging.getLogger("smartbin.test.native")
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    decoding, logged = threading.Event(), threading.Event()

    def decode() -> None:  # holds fd 2 silenced while the main thread logs, as a decode would
        with native.native_stderr_silenced():
            decoding.set()
            logged.wait(10)
            os.write(2, b"native chatter\n")

    worker = threading.Thread(target=decode)
    worker.start()
    assert decoding.wait(10)
    logger.warning("mqtt: broker gone, reconnecting")
    logged.set()
    worker.join(10)
    logger.warning("back")
    assert capfd.readouterr().err == "mqtt: broker gone, reconnecting\nback\n"


def test_an_error_that_an_interrupt_caused_is_that_interrupt():
    """TensorFlow's native code can turn a Ctrl-C into a SystemError; the noted signal wins."""
    from smartbin.device import cli, interrupts

    with pytest.raises(KeyboardInterrupt), cli._noted_interrupts():
        interrupts.note(signal.SIGINT)  # as the handler does
        raise SystemError("Objects/listobject.c:338: bad argument to internal function")
    with pytest.raises(SystemError), cli._noted_interrupts():  # without an interrupt, the error stands
        raise SystemError("a real one")


def test_a_swallowed_interrupt_is_not_reported_as_ignored(monkeypatch):
    from smartbin.device import cli

    reported = []  # what Python's "Exception ignored in ..." report would show
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(type(info.exc_value)))

    class DropsAnInterrupt:
        def __del__(self) -> None:
            raise KeyboardInterrupt  # where Ctrl-C lands in a weakref callback: Python can only drop it

    class DropsAnError:
        def __del__(self) -> None:
            raise ZeroDivisionError

    with cli._noted_interrupts():
        DropsAnInterrupt()
        DropsAnError()
    assert reported == [ZeroDivisionError]  # anything else is still reported
