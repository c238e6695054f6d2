"""The bin's own state: event log, state directory, status.json, the daemon lock, saved photos.

Every case ends with the bin sorting or with one line on stderr. The faults are real: garbage
bytes, truncated and damaged SQLite files, a path below a regular file (NotADirectoryError:
it stops root too, where chmod stops nothing), a second real daemon, a full or read-only tmpfs
where the test may mount one (those cases are skipped elsewhere). Start-up cases run
``smartbin run`` as systemd would (a subprocess, READY=1 on a real notify socket); cases that
need items run the daemon in-process on gpiozero's mock pins with the folder camera.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from smartbin.device.cli import main
from smartbin.device.config import Config, load_config
from smartbin.device.daemon import Daemon
from smartbin.device.errors import SmartbinError
from smartbin.device.hardware.cameras import FolderCamera
from smartbin.device.home.notify import Notifier
from smartbin.device.records.events import ItemEvent

from ..device.conftest import Bin, NotifySocket
from .conftest import MODELS, assert_one_line_error, mounted_tmpfs, run_smartbin

TIMEOUT = 60
SMARTBIN = [sys.executable, "-m", "smartbin.device.cli"]
RED = (220, 30, 30)  # "can" for the colour test models


def write_config(tmp_path: Path, state_dir: Path, *, save_images: bool = False, **paths: Path) -> Path:
    photo = tmp_path / "photos" / "red.png"
    photo.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(photo), np.full((48, 64, 3), RED[::-1], np.uint8))
    extra = "".join(f'{key} = "{value}"\n' for key, value in paths.items())
    path = tmp_path / "config.toml"
    path.write_text(
        f'[gpio]\npin_factory = "mock"\n[camera]\nkind = "folder"\nsource = "{photo.parent}"\n'
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        "[lid]\nsettle_s = 0\n[sorting]\ntravel_s = 0\nhold_s = 0\n"
        f'[images]\nsave = {str(save_images).lower()}\nmax_count = 2\n[paths]\nstate_dir = "{state_dir}"\n{extra}'
    )
    return path


def make_events_db(path: Path, items: int = 300) -> None:
    """A real event log with ``items`` rows, written as the daemon writes it."""
    from smartbin.device.records.events import EventLog, ItemEvent

    log = EventLog(path)
    for i in range(items):
        log.record(
            ItemEvent(
                ts=f"2026-11-22T10:00:{i % 60:02d}.000+00:00",
                label="can",
                confidence=0.9,
                scores={"can": 0.9, "glass": 0.05, "plastic": 0.05},
                compartment="can",
                reason="sorted",
                model_version="m-1",
                frames=1,
                capture_ms=1.0,
                inference_ms=1.0,
                latency_ms=2.0,
            )
        )
    log.close()


def status_json(config: Path) -> dict[str, Any]:
    result = run_smartbin("status", "--json", "--config", config)
    return json.loads(result.stdout)


# --- `smartbin run` as systemd runs it ----------------------------------------------------


@contextmanager
def running(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``smartbin run`` up to READY=1: yields the process and its STATUS= line; then SIGTERM,
    and it must stop cleanly; never a traceback."""
    notify = NotifySocket(tmp_path / f"notify-{len(list(tmp_path.glob('notify-*')))}")
    log = (tmp_path / f"{notify.path.name}.log").open("w+")
    env = os.environ | {"NOTIFY_SOCKET": str(notify.path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*SMARTBIN, "run", "--config", str(config)], env=env, stderr=log, text=True)
    try:
        ready = notify.wait_for("READY=1").splitlines()
        yield proc, next(line for line in ready if line.startswith("STATUS="))
        if proc.poll() is None:  # (unless the test killed it)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.sock.close()
        log.seek(0)
        text = log.read()
        log.close()
    assert "Traceback" not in text, text


CORRUPT_DBS = {
    "garbage after a power cut": lambda db: db.write_bytes(os.urandom(20_000)),
    "a few bytes": lambda db: db.write_bytes(b"SQLite"),
    "truncated to half": lambda db: (make_events_db(db), os.truncate(db, db.stat().st_size // 2)),
    "truncated to its header": lambda db: (make_events_db(db), os.truncate(db, 100)),
    "a damaged page in the middle": lambda db: (make_events_db(db), _scribble(db, 3 * 4096, 2000)),
    "garbage db with garbage -wal and -shm": lambda db: (
        db.write_bytes(os.urandom(8192)),
        Path(f"{db}-wal").write_bytes(os.urandom(5000)),
        Path(f"{db}-shm").write_bytes(os.urandom(300)),
    ),
}


def _scribble(path: Path, offset: int, size: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(size))


@pytest.mark.parametrize("damage", CORRUPT_DBS.values(), ids=CORRUPT_DBS.keys())
def test_a_corrupt_event_log_is_moved_aside_and_the_bin_starts(tmp_path, damage):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "events.db"
    damage(db)
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    config = write_config(tmp_path, state)

    with running(config, tmp_path) as (_, status_line):
        assert "the event log was corrupt" in status_line
        status = status_json(config)
        [aside] = status["event_log"]["moved_aside"]
        assert status["running"] and status["event_log"]["recording"]
        assert any("moved aside to" in w and aside["path"] in w for w in status["warnings"])
        text = run_smartbin("status", "--config", config).stdout
        assert (
            f"warning:  the event log was corrupt ({aside['reason']}): moved aside to {aside['path']}" in text
        )

    # never deleted: the damaged files, -wal and -shm included, are all there byte for byte
    aside = Path(aside["path"])
    assert aside.parent == state and aside.name.startswith("events.db.corrupt-20")
    for name, data in before.items():
        assert Path(f"{aside}{name.removeprefix('events.db')}").read_bytes() == data
    # and the fresh log works
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone() == (0,)


def test_a_garbage_wal_beside_a_good_log_keeps_the_log(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    make_events_db(state / "events.db", items=5)
    (state / "events.db-wal").write_bytes(os.urandom(10_000))
    config = write_config(tmp_path, state)
    with running(config, tmp_path) as (_, status_line):
        assert status_line == "STATUS=model colour3-int8-1, 0 items"
    events = json.loads(run_smartbin("events", "--json", "--config", config).stdout)
    assert events["totals"]["items"] == 5
    assert not list(state.glob("*corrupt*"))


def test_an_event_log_that_is_a_directory_is_left_alone_and_the_bin_sorts_without_records(tmp_path):
    state = tmp_path / "state"
    (state / "events.db" / "keep").mkdir(parents=True)
    config = write_config(tmp_path, state)
    with running(config, tmp_path) as (_, status_line):
        assert "not recording items: cannot open the event log" in status_line
        status = status_json(config)
        assert status["event_log"]["recording"] is False
        assert any(w.endswith("events.db: is a directory") for w in status["warnings"])
        assert "NOT RECORDING" in run_smartbin("status", "--config", config).stdout
    assert (state / "events.db" / "keep").is_dir()
    result = run_smartbin("events", "--config", config)
    assert_one_line_error(result, "events.db: is a directory")


@pytest.mark.parametrize("where", ["state_dir", "events_db"])
def test_a_state_path_below_a_regular_file_starts_without_records(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    if where == "state_dir":
        config = write_config(tmp_path, blocker / "state")
    else:
        config = write_config(tmp_path, tmp_path / "state", events_db=blocker / "events.db")
    with running(config, tmp_path) as (proc, status_line):
        assert "not a directory" in status_line and "not recording items" in status_line
        if where == "state_dir":  # no status.json possible: status says so instead of guessing
            result = run_smartbin("status", "--config", config)
            assert_one_line_error(result, "no daemon state in", "is not a directory", "journalctl")
        else:
            assert status_json(config)["pid"] == proc.pid
    assert blocker.read_text() == "not a directory\n"


# --- the daemon in-process: items go on through faults ---------------------------------------


class InProcessBin(Bin):
    """The shared test :class:`Bin` on its own mock pins and a looping folder camera, writing
    status.json after every item; :meth:`item` also checks that the item was sorted."""

    def __init__(self, config: Config) -> None:
        camera = FolderCamera(Path(str(config.camera.source)), frames_per_image=1, loop=True)
        super().__init__(config, MockFactory(pin_class=MockPWMPin), camera)
        self.daemon.status_interval_s = 0  # status.json after every item

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.factory.close()

    def item(self, timeout: float = 10) -> ItemEvent:
        event = super().item(timeout)
        assert (event.label, event.compartment) == ("can", "can")  # sorted, whatever the records did
        return event


def test_an_event_log_damaged_while_running_is_moved_aside_and_recording_goes_on(tmp_path):
    config = load_config(write_config(tmp_path, tmp_path / "state"))
    db = config.paths.events_db
    with InProcessBin(config) as b:
        b.item()
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):  # a card that returns garbage
            _scribble(path, 0, path.stat().st_size)
        event = b.item()
        status = json.loads((config.paths.state_dir / "status.json").read_text())
    [aside] = status["event_log"]["moved_aside"]
    assert aside["reason"] == "file is not a database" and Path(aside["path"]).exists()
    assert status["event_log"]["not_recorded"] == 0
    rows = sqlite3.connect(db).execute("SELECT id, ts FROM events").fetchall()
    assert rows == [(1, event.ts)]  # the item that met the damage is in the fresh log


def test_a_record_that_cannot_be_written_shows_in_status(tmp_path, capsys):
    config_path = write_config(tmp_path, tmp_path / "state")
    config = load_config(config_path)
    with InProcessBin(config) as b:
        b.item()
        # SQLite's own size limit: inserts fail with SQLITE_FULL, as on a full disk
        log = b.daemon.records.log._db
        log.execute(f"PRAGMA max_page_count = {log.execute('PRAGMA page_count').fetchone()[0]}")
        for _ in range(40):
            b.item()
        assert main(["status", "--json", "--config", str(config_path)]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", "--config", str(config_path)]) == 0
        text = capsys.readouterr().out
    assert status["items"] == 41
    recorded = sqlite3.connect(config.paths.events_db).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    log_status = status["event_log"]
    assert log_status["recording"] and log_status["not_recorded"] == 41 - recorded > 0
    assert log_status["last_error"] == "database or disk is full"
    assert f"{41 - recorded} items not recorded" in text
    assert "item(s) not recorded, the last at" in text and "database or disk is full" in text


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs."""
    with mounted_tmpfs(tmp_path / "tmpfs", "size=512k") as mnt:
        yield mnt


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_shows_in_status_and_the_bin_sorts_on(tmpfs, tmp_path, capsys):
    config_path = write_config(tmp_path, tmpfs / "state")
    config = load_config(config_path)
    with InProcessBin(config) as b:
        b.item()
        filler = fill(tmpfs)
        b.item()
        b.item()
        # the daemon cannot update status.json now: status sees the full disk for itself
        assert main(["status", "--config", str(config_path)]) == 0
        text = capsys.readouterr().out
        assert f"warning:  the disk holding {tmpfs / 'state'} is full" in text and "may be stale" in text
        filler.unlink()
        b.item()
        assert main(["status", "--json", "--config", str(config_path)]) == 0
        status = json.loads(capsys.readouterr().out)
    assert status["items"] == 4 and status["event_log"]["not_recorded"] == 2
    assert status["event_log"]["last_error"] == "database or disk is full"
    assert sqlite3.connect(config.paths.events_db).execute("SELECT COUNT(*) FROM events").fetchone() == (2,)


def test_a_read_only_state_dir_starts_and_status_says_it_may_be_stale(tmpfs, tmp_path):
    config = write_config(tmp_path, tmpfs / "state")
    with running(config, tmp_path):
        pass
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with running(config, tmp_path) as (_, status_line):
        assert "read-only file system" in status_line
        result = run_smartbin("status", "--config", config)
    # the file is the last run's: status says that it may be stale and why
    assert "cannot write the state directory" in result.stdout and "may be stale" in result.stdout
    assert "read-only file system" in result.stdout
    assert_one_line_error(result, "not running")


def test_photos_that_are_not_the_bins_are_never_pruned_nor_counted(tmp_path):
    images = tmp_path / "state" / "images"
    images.mkdir(parents=True)
    foreign = {
        "holiday.jpg": b"a person's photo",
        "20261122T100000123456Z-can.jpg": b"looks like a stamp, no prefix",
        "smartbin-notatime-can.jpg": b"prefix, no time",
        "smartbin-20261122T100000123456Z-can.jpg.bak": b"a copy",
        "SMARTBIN-20261122T100000123456Z-can.jpg": b"other case",
    }
    for name, data in foreign.items():
        (images / name).write_bytes(data)
    (images / "smartbin-20261122T100000123456Z-can.jpg").mkdir()  # our name, but a folder
    config = load_config(write_config(tmp_path, tmp_path / "state", save_images=True))  # max_count = 2
    with InProcessBin(config) as b:
        saved = [Path(b.item().image_path) for _ in range(4)]
        status = b.daemon.status()["images"]
    assert [p.exists() for p in saved] == [False, False, True, True]
    assert all((images / name).read_bytes() == data for name, data in foreign.items())
    assert (images / "smartbin-20261122T100000123456Z-can.jpg").is_dir()
    assert (status["count"], status["saving"], status["not_saved"]) == (2, True, 0)


def test_an_images_dir_that_cannot_be_made_leaves_the_bin_sorting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = load_config(
        write_config(tmp_path, tmp_path / "state", save_images=True, images_dir=blocker / "img")
    )
    with InProcessBin(config) as b:
        assert b.item().image_path is None
        status = b.daemon.status()
    assert status["images"]["saving"] is False
    assert any(w.startswith("not saving photos:") and "not a directory" in w for w in status["warnings"])


# --- one daemon per state directory ---------------------------------------------------------


def test_a_second_daemon_on_one_state_dir_refuses_naming_the_first(tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path, state)
    with running(config, tmp_path) as (first, _):
        before = (state / "status.json").read_text()
        second = run_smartbin("run", "--config", config, timeout=TIMEOUT)
        assert_one_line_error(second, f"another smartbin daemon (pid {first.pid}) already runs on {state}")
        sim = run_smartbin("simulate", "--fast", "--state-dir", state, "--config", config, timeout=TIMEOUT)
        assert_one_line_error(sim, f"pid {first.pid}")
        assert (state / "status.json").read_text() == before  # the first one's status is untouched
    # released on a clean stop ...
    with running(config, tmp_path) as (again, _):
        assert status_json(config)["pid"] == again.pid
        again.kill()  # ... and by the kernel when the holder dies without cleaning up
        again.wait()
        with running(config, tmp_path) as (third, _):
            assert status_json(config)["pid"] == third.pid


def test_a_second_daemon_in_one_process_is_refused_and_the_first_sorts_on(tmp_path):
    config = load_config(write_config(tmp_path, tmp_path / "state"))
    with InProcessBin(config) as first:
        second = Daemon(config, pin_factory=MockFactory(pin_class=MockPWMPin), notifier=Notifier({}))
        with pytest.raises(SmartbinError, match=f"pid {os.getpid()}"):
            second.run()
        first.item()


@pytest.mark.parametrize("shared", ["events_db", "images_dir"])
def test_two_daemons_with_their_own_state_dirs_cannot_share_a_log_or_photos(tmp_path, shared):
    """They both ran, interleaving one log and overrunning each other's photo limits."""
    one = {shared: tmp_path / "shared" / ("events.db" if shared == "events_db" else "images")}
    first = load_config(write_config(tmp_path, tmp_path / "a", save_images=True, **one))
    second = load_config(write_config(tmp_path / "b", tmp_path / "b" / "state", save_images=True, **one))
    with InProcessBin(first) as a:
        other = Daemon(second, pin_factory=MockFactory(pin_class=MockPWMPin), notifier=Notifier({}))
        with pytest.raises(SmartbinError) as err:
            other.run()
        assert f"pid {os.getpid()}) already uses {one[shared]}; give each bin its own paths.{shared}" in str(
            err.value
        )
        a.item()


# --- reload -------------------------------------------------------------------------------


def test_a_failed_reload_shows_in_status_until_a_good_one(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(MODELS / "colour3-int8", bundle)
    config_path = write_config(tmp_path, tmp_path / "state")
    config_path.write_text(config_path.read_text().replace(str(MODELS / "colour3-int8"), str(bundle)))
    config = load_config(config_path)
    with InProcessBin(config) as b:
        good = (bundle / "model.tflite").read_bytes()
        (bundle / "model.tflite").write_bytes(good[: len(good) // 2])
        assert b.daemon.reload() is False
        b.item()  # still sorting with the old model
        assert main(["status", "--json", "--config", str(config_path)]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", "--config", str(config_path)]) == 0
        text = capsys.readouterr().out

        (bundle / "model.tflite").write_bytes(good)
        assert b.daemon.reload() is True
        assert main(["status", "--json", "--config", str(config_path)]) == 0
        after = json.loads(capsys.readouterr().out)
    reload = status["last_reload"]
    assert (reload["ok"], reload["model_version"]) == (False, "colour3-int8-1")
    assert "corrupt or truncated" in reload["error"]
    line = f"warning:  last reload failed at {reload['at']}: {reload['error']}; still running model colour3-int8-1"
    assert line in text.splitlines()
    assert after["last_reload"]["ok"] is True and after["warnings"] == []


# --- status.json and the commands that read the state ----------------------------------------

BAD_STATUS = {
    "empty": (b"", "(empty)"),
    "truncated": (b'{"pid": 812, "state": "ready", "star', "bad or truncated JSON"),
    "a list": (b"[1, 2]", "a JSON list, not an object"),
    "a string": (b'"ready"', "a JSON str, not an object"),
    "no pid": (b'{"state": "ready", "started": "2026-11-22T10:00:00+00:00"}', "no pid or start time"),
    "a bad time": (b'{"pid": 1, "state": "ready", "started": "yesterday"}', "no pid or start time"),
    "not text": (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    "a boolean pid": (b'{"pid": true, "started": "2026-11-22T10:00:00+00:00"}', "no pid or start time"),
}

_STARTED = b'"pid": 1, "state": "stopped", "started": "2026-11-22T10:00:00+00:00"'
BAD_FIELDS = {
    "warnings not a list": (b'{%s, "warnings": 5}' % _STARTED, "a field of the wrong kind"),
    "a text confidence": (
        b'{%s, "last_item": {"ts": "t", "label": "can", "confidence": "high", "compartment": "can", '
        b'"reason": "sorted", "latency_ms": 3}}' % _STARTED,
        "a field of the wrong kind",
    ),
    "an event log without recording": (
        b'{%s, "event_log": {"path": "x"}}' % _STARTED,
        "no field 'recording'",
    ),
}


@pytest.mark.parametrize(("data", "says"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_status_file_with_a_field_of_the_wrong_kind_is_one_line_and_no_half_status(tmp_path, data, says):
    config = write_config(tmp_path, tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_bytes(data)
    result = run_smartbin("status", "--config", config)
    assert_one_line_error(result, "status.json is not a status file", says, "the daemon rewrites it")
    assert result.stdout == ""


@pytest.mark.parametrize(("data", "says"), BAD_STATUS.values(), ids=BAD_STATUS.keys())
def test_a_bad_status_file_is_one_line(tmp_path, data, says):
    config = write_config(tmp_path, tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_bytes(data)
    for args in (["status"], ["status", "--json"]):
        result = run_smartbin(*args, "--config", config)
        assert_one_line_error(result, "status.json is not a status file", says, "the daemon rewrites it")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "cannot read {p}: is a directory"),
        (lambda p: p.symlink_to(p), "cannot read {p}: too many levels of symbolic links"),
    ],
    ids=["a directory", "a symlink loop"],
)
def test_an_unreadable_status_file_is_one_line(tmp_path, make, says):
    config = write_config(tmp_path, tmp_path / "state")
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "status.json"
    make(path)
    assert_one_line_error(run_smartbin("status", "--config", config), says.format(p=path))


@pytest.mark.parametrize("damage", ["garbage", "another program's table", "a directory"])
def test_events_with_a_broken_log_is_one_line(tmp_path, damage):
    config = write_config(tmp_path, tmp_path / "state")
    db = tmp_path / "state" / "events.db"
    db.parent.mkdir()
    if damage == "garbage":
        db.write_bytes(os.urandom(5000))
        says = ["file is not a database", "moves a damaged one aside"]
    elif damage == "another program's table":
        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
            other.execute("INSERT INTO events (what) VALUES ('x')")
        other.close()
        says = ["cannot read the event log", "smartbin did not write it"]
    else:
        db.mkdir()
        says = ["is a directory"]
    assert_one_line_error(run_smartbin("events", "--config", config), *says)


@pytest.mark.parametrize("command", ["status", "events"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, command):
    state = tmp_path / "state"
    config = write_config(tmp_path, state)
    make_events_db(state / "events.db", items=50)
    with running(config, tmp_path):
        read, write = os.pipe()
        os.close(read)  # `| head` that has already gone: every write fails with EPIPE
        try:
            result = subprocess.run(
                [*SMARTBIN, command, "--config", str(config)],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=TIMEOUT,
            )
        finally:
            os.close(write)
    assert result.returncode == 1
    assert result.stderr == "", result.stderr


@pytest.mark.parametrize("kind", ["a file", "below a file"])
def test_simulate_state_dir_that_cannot_be_a_directory_is_one_line(tmp_path, kind):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    state = blocker if kind == "a file" else blocker / "state"
    result = run_smartbin("simulate", "--fast", "--state-dir", state, timeout=TIMEOUT)
    assert_one_line_error(result, "--state-dir", "not a directory")
    assert blocker.read_text() == "x"


def test_simulate_state_dir_that_cannot_be_created_is_one_line_before_any_item():
    # /proc takes no new folders, not even from root (whom os.access lets past every check)
    result = run_smartbin("simulate", "--fast", "--state-dir", "/proc/smartbin-state", timeout=TIMEOUT)
    assert_one_line_error(result, "/proc/smartbin-state: cannot create it", "choose another --state-dir")
    assert result.stdout == ""


def test_store_export_events_copies_the_log_and_names_a_wrong_out_in_one_line(tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path, state)
    make_events_db(state / "events.db", items=5)
    copy = tmp_path / "copy.db"
    result = run_smartbin("store", "export-events", "--config", config, "--out", copy)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 5
    db.close()
    for out, says in (
        (tmp_path, f"--out {tmp_path} is a folder; give a file name, such as {tmp_path / 'events.db'}"),
        (tmp_path / "none" / "x.db", f"no folder {tmp_path / 'none'} to write it in"),
    ):
        result = run_smartbin("store", "export-events", "--config", config, "--out", out)
        assert_one_line_error(result, says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "copy.db", "photos", "state"]


def test_status_judges_liveness_by_the_lock_not_a_pid_someone_else_may_have(tmp_path):
    """After kill -9 the PID may be reused (here: this test's own, alive) and a killed daemon may be
    unreaped: only the lock the daemon held says whether it runs."""
    from datetime import UTC, datetime, timedelta

    from smartbin.device.records.lock import StateDirLock

    state = tmp_path / "state"
    config = write_config(tmp_path, state)
    state.mkdir()

    def write(updated: datetime) -> None:
        status = {"pid": os.getpid(), "state": "ready", "started": "2026-11-22T10:00:00+00:00"}
        (state / "status.json").write_text(
            json.dumps(status | {"updated": updated.isoformat(), "warnings": []})
        )

    write(datetime.now(UTC))
    result = run_smartbin("status", "--config", config)
    assert (
        result.returncode == 1 and "not running" in result.stderr and "smartbin: not running" in result.stdout
    )

    lock = StateDirLock(state)
    lock.acquire()  # as the daemon holds it
    try:
        result = run_smartbin("status", "--config", config)
        assert (
            result.returncode == 0
            and "smartbin: running" in result.stdout
            and "heartbeat" not in result.stdout
        )
        write(datetime.now(UTC) - timedelta(minutes=5))  # a daemon that holds the lock but writes nothing
        result = run_smartbin("status", "--config", config)
        assert result.returncode == 0 and "no heartbeat from the daemon for 30" in result.stdout
    finally:
        lock.release()


def test_an_idle_daemon_writes_its_heartbeat(tmp_path, monkeypatch):
    from smartbin.device import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "HEARTBEAT_S", 0.2)
    config = load_config(write_config(tmp_path, tmp_path / "state"))
    with InProcessBin(config):
        first = status_json_of(tmp_path / "state")["updated"]
        deadline = time.monotonic() + 10
        while status_json_of(tmp_path / "state")["updated"] == first:
            assert time.monotonic() < deadline, "no heartbeat while idle"
            time.sleep(0.1)


def status_json_of(state: Path) -> dict[str, Any]:
    return json.loads((state / "status.json").read_text())


def test_photos_give_way_before_the_disk_fills_and_say_so(tmp_path, monkeypatch):
    """With saved photos on a nearly full disk, 40 of 96 items went unrecorded while photos kept being
    written. Photos now stop first, and the reason reaches the event and the status."""
    from types import SimpleNamespace

    from smartbin.device.records import photos as photos_module

    config = load_config(write_config(tmp_path, tmp_path / "state", save_images=True))
    with InProcessBin(config) as b:
        assert b.item().image_path is not None
        nearly_full = SimpleNamespace(total=8_000_000_000, used=7_970_000_000, free=30_000_000)
        monkeypatch.setattr(photos_module.shutil, "disk_usage", lambda path: nearly_full)
        event = b.item()
        warnings = b.daemon.warnings()
    assert event.image_path is None and "image: no space left for photos: 30 MB free" in event.error
    assert "photos pause below 50 MB to keep room for the event log" in event.error
    assert any("1 photo(s) not saved" in w and "no space left for photos" in w for w in warnings)
    with sqlite3.connect(config.paths.events_db) as db:  # the item itself is recorded
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2


def test_an_event_log_held_by_another_program_neither_stalls_nor_loses_items(tmp_path):
    """An open sqlite3 shell holding a write lock stalled each item about 5 s in the INSERT and
    dropped rows with "database is locked"."""
    config = load_config(write_config(tmp_path, tmp_path / "state"))
    with InProcessBin(config) as b:
        b.item()
        shell = sqlite3.connect(config.paths.events_db, isolation_level=None)
        shell.execute("BEGIN IMMEDIATE")  # as `sqlite3 events.db` with a transaction open
        try:
            started = time.monotonic()
            held = [b.item() for _ in range(3)]
            assert time.monotonic() - started < 3.0  # not 3 x 5 s
            assert [e.id for e in held] == [None, None, None]
            status = b.daemon.status()["event_log"]
            assert status["waiting"] == 3 and status["not_recorded"] == 0
            assert any("another program holds the event log" in w for w in b.daemon.warnings())
        finally:
            shell.rollback()
            shell.close()
        deadline = time.monotonic() + 10
        while b.daemon.records.waiting:  # written between items, once the lock is let go
            assert time.monotonic() < deadline, "the waiting items were never written"
            time.sleep(0.1)
        assert b.item().id == 5
        assert not any("another program" in w for w in b.daemon.warnings())
    with sqlite3.connect(config.paths.events_db) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM events ORDER BY ts")]
    assert ids == [1, 2, 3, 4, 5]  # every item, in the order they came


def test_a_photo_whose_event_a_power_cut_prevented_is_recorded_at_start(tmp_path):
    config = load_config(write_config(tmp_path, tmp_path / "state", save_images=True))
    with InProcessBin(config) as b:
        b.item()
    photos = sorted(config.paths.images_dir.glob("smartbin-*.jpg"))
    orphan = photos[-1].with_name("smartbin-20991231T235959123456Z-glass.jpg")  # saved, then the power went
    shutil.copy(photos[-1], orphan)
    with InProcessBin(config) as b:
        b.item()
    with sqlite3.connect(config.paths.events_db) as db:
        rows = db.execute(
            "SELECT label, reason, compartment, image_path, error FROM events ORDER BY id"
        ).fetchall()
    assert [row[1] for row in rows] == [
        "sorted",
        "unrecorded",
        "sorted",
    ]  # the first item is not adopted twice
    label, _, compartment, image_path, error = rows[1]
    assert (label, compartment, image_path) == ("glass", None, str(orphan)) and "a power cut?" in error
