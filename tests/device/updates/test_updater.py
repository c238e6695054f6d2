"""The bin updating itself: a daemon on mock pins and the folder camera, real TFLite bundles
offered by an in-process update source (tests/device/updates/folder_source.py), the real model
store, the health check and the rollback."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from smartbin.device.home.observers import Observer
from smartbin.device.records.state import read_status
from smartbin.device.updates.settings import UpdatesConfig
from smartbin.device.updates.source import UpdateError
from smartbin.device.updates.updater import Updater, jittered
from smartbin.device.vision.store import ModelStore

from ..conftest import MODELS, REPO, fast_config
from .folder_source import FolderSource

OLD, NEW, SICK = "colour3-int8-1", "colour3-float32-1", "bad-nan-on-red-float32-1"
WAIT_S = 10.0


class Watch(Observer):
    """Hears the daemon's status changes and items starting."""

    name = "watch"

    def __init__(self) -> None:
        self.statuses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.item_begun = threading.Event()

    def started(self, status) -> None:
        self.statuses.put(dict(status))

    def item_started(self) -> None:
        self.item_begun.set()

    def status_changed(self, status) -> None:
        self.statuses.put(dict(status))

    def until(self, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first ``update`` status (from now on) for which ``wanted`` holds."""
        deadline = time.monotonic() + WAIT_S
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = self.statuses.get(timeout=max(0.0, deadline - time.monotonic()))["update"]
            except queue.Empty:
                break
            if wanted(seen):
                return seen
        raise AssertionError(f"never: {what} (last: {seen})")


@pytest.fixture
def store_config(tmp_path):
    """A bin whose model store has colour3-int8 live, and an [updates] table."""
    models = tmp_path / "models"
    config = fast_config(
        tmp_path,
        classifier={"model": ""},
        paths={"models_dir": str(models)},
        updates={"url": "https://updates.example/bins", "root": str(tmp_path / "root.json")},
    )
    ModelStore(models).install(MODELS / "colour3-int8", config)
    return config


@pytest.fixture
def source(tmp_path):
    work = tmp_path / "downloads"
    work.mkdir()
    return FolderSource(MODELS, work)


def test_a_new_version_goes_live_between_items_and_the_next_item_is_sorted_with_it(
    make_bin, store_config, source
):
    watch = Watch()
    source.offering = "colour3-float32"
    source.gate = watch.item_begun  # the download ends while an item is in hand
    with make_bin("red", "blue", config=store_config, observers=[watch], update_source=source) as b:
        assert b.daemon.status()["update"]["installed_version"] == OLD
        b.daemon.updates.updater.check_now()
        b.lid_pin.drive_low()
        first = b.events.get(timeout=WAIT_S)
        b.lid_pin.drive_high()
        update = watch.until(lambda u: u["installed_version"] == NEW, "the new model live")
        second = b.item()
        status = read_status(store_config.paths.state_dir)

    assert (first.label, first.model_version) == ("can", OLD)  # the item in hand kept its model
    assert (second.label, second.compartment, second.model_version) == ("plastic", "plastic", NEW)
    assert update["state"] == "up to date" and update["reason"] is None
    assert update["latest_offered"] == NEW and update["not_retried"] is None
    store = ModelStore(store_config.paths.models_dir)
    assert (store.current, store.previous) == (NEW, OLD)  # the same store, and rollback, as deploy
    assert status["model_version"] == NEW and status["update"]["installed_version"] == NEW
    assert status["update"]["last_check_at"] and status["update"]["next_check_at"]
    assert not any("update" in w for w in status["warnings"])


def test_a_bundle_that_fails_its_health_check_is_rolled_back_and_never_tried_again(
    make_bin, store_config, source
):
    watch = Watch()
    source.offering = "bad-nan-on-red-float32"  # passes every check at load; NaN on a red frame
    with make_bin("red", "red", "red", config=store_config, observers=[watch], update_source=source) as b:
        assert b.item().label == "can"  # the frame the health check runs the new model on
        b.daemon.updates.updater.check_now()
        failed = watch.until(lambda u: u["state"] == "failed", "the health check failing")
        assert ModelStore(store_config.paths.models_dir).current == OLD
        again = b.item()
        b.daemon.updates.updater.check_now()
        skipped = watch.until(lambda u: "not tried again" in (u["reason"] or ""), "a second check")
        warnings = b.daemon.warnings()

    assert "health check failed" in failed["reason"] and "non-finite scores (nan" in failed["reason"]
    assert f"rolled back to {OLD}" in failed["reason"] and failed["installed_version"] == OLD
    assert (again.label, again.compartment, again.model_version) == ("can", "can", OLD)  # sorting on
    assert source.fetched == [SICK]  # not fetched or installed a second time
    assert skipped["state"] == "failed" and skipped["not_retried"]["version"] == SICK
    store = ModelStore(store_config.paths.models_dir)
    assert (store.current, store.previous) == (OLD, None)  # the pointers as before the update
    assert any(w.startswith("update failed:") for w in warnings)


def test_a_refused_version_is_remembered_across_a_restart(make_bin, store_config, source):
    source.offering = "colour3-float32"
    source.fetch_errors = [UpdateError("targets: signature threshold not reached (0 of 1)", refused=True)]
    watch = Watch()
    with make_bin("red", config=store_config, observers=[watch], update_source=source) as b:
        b.daemon.updates.updater.check_now()
        refused = watch.until(lambda u: u["state"] == "refused", "the refusal")
    assert refused["reason"] == f"{NEW}: targets: signature threshold not reached (0 of 1)"

    watch = Watch()  # a new daemon on the same state directory
    with make_bin("red", config=store_config, observers=[watch], update_source=source) as b:
        b.daemon.updates.updater.check_now()
        again = watch.until(lambda u: u["state"] == "refused" and u["last_check_at"], "the second check")
        assert b.item().model_version == OLD
    assert source.offers == 2 and source.fetched == [NEW]  # asked again, never fetched again
    assert "not tried again: targets: signature threshold" in again["reason"]
    assert again["not_retried"]["outcome"] == "refused"
    remembered = json.loads((store_config.paths.state_dir / "updates" / "not-retried.json").read_text())
    assert remembered[NEW]["outcome"] == "refused"


def test_a_passing_failure_is_tried_again_by_the_schedule_sooner_than_the_interval(
    make_bin, store_config, source
):
    source.offering = "colour3-float32"
    source.offer_errors = [UpdateError("cannot reach https://updates.example/bins: connection refused")]
    watch = Watch()
    with make_bin("red", config=store_config, observers=[watch], update_source=source) as b:
        b.daemon.updates.updater.retry_s = 0.2  # 60 s on a bin
        b.daemon.updates.updater.check_now()
        failed = watch.until(lambda u: u["state"] == "failed", "the failed check")
        live = watch.until(lambda u: u["installed_version"] == NEW, "the retry installing it")
    assert "connection refused" in failed["reason"] and failed["not_retried"] is None
    retry_in = _seconds_until(failed["next_check_at"], failed["last_check_at"])
    assert 0 < retry_in < 1  # not the 6-hour interval
    assert source.offers == 2 and live["state"] == "up to date"


def _seconds_until(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_the_first_check_comes_soon_after_start_then_every_interval_jittered(tmp_path, source):
    settings = UpdatesConfig(url="https://updates.example/bins", root=tmp_path / "root.json", jitter=0.5)
    updater = Updater(settings, source, tmp_path / "updates", rng=random.Random(7))
    updater.first_check_s = 0.05
    updater.start("v1")
    try:
        assert source.asked.wait(WAIT_S)  # the first, scheduled check: the channel offers nothing
        deadline = time.monotonic() + WAIT_S
        while updater.status()["state"] != "up to date":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status = updater.status()
    finally:
        updater.stop()
    wait = (datetime.fromisoformat(status["next_check_at"]) - datetime.now(UTC)).total_seconds()
    assert 0.5 * 21600 - 5 < wait <= 1.5 * 21600
    assert status["latest_offered"] is None and status["installed_version"] == "v1"
    rng = random.Random(0)
    waits = [jittered(100, 0.25, rng) for _ in range(200)]
    assert 75 <= min(waits) < 80 and 120 < max(waits) <= 125  # spread over the whole band


def test_status_the_page_and_the_warnings_say_why_a_version_was_refused(tmp_path, factory, capsys, source):
    from smartbin.device.cli import main
    from smartbin.device.config import load_config
    from smartbin.device.hardware.cameras import FolderCamera
    from smartbin.device.home.web.observer import WebObserver

    from ..conftest import Bin, write_image
    from ..home.web_client import page_of

    path = tmp_path / "config.toml"
    path.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        '[updates]\nurl = "https://updates.example/bins"\nroot = "root.json"\nchannel = "canary"\n'
        f'[web]\nlisten = "127.0.0.1:0"\ntoken_file = "{tmp_path / "web-token"}"\n'
    )
    config = load_config(path)
    write_image(tmp_path / "photos" / "a.png", "red")
    source.offering = "colour3-float32"
    source.fetch_errors = [UpdateError("snapshot.json has expired", refused=True)]
    watch, web = Watch(), WebObserver(config)
    camera = FolderCamera(tmp_path / "photos", frames_per_image=config.classifier.frames)
    with Bin(config, factory, camera, observers=[watch, web], update_source=source) as b:
        b.daemon.updates.updater.check_now()
        watch.until(lambda u: u["state"] == "refused", "the refusal")
        http = page_of(web)
        deadline = time.monotonic() + WAIT_S
        while (http.json("/api/status").get("update") or {}).get("state") != "refused":
            assert time.monotonic() < deadline, "the page never heard of the refusal"
            time.sleep(0.05)
        page = http.json("/api/status")
        assert main(["status", "--config", str(path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", "--config", str(path)]) == 0
        text = capsys.readouterr().out

    why = f"{NEW}: snapshot.json has expired"
    assert page["update"]["reason"] == why and f"update refused: {why}" in page["warnings"]
    assert status["update"]["state"] == "refused" and status["update"]["reason"] == why
    assert status["update"]["channel"] == "canary" and status["update"]["latest_offered"] == NEW
    line = next(line for line in text.splitlines() if line.startswith("update:"))
    assert line.startswith(f"update:   REFUSED: {why} (channel canary of https://updates.example/bins)")
    assert "next " in line
    assert f"warning:  update refused: {why}" in text
    # the page shows it in one line of its status panel
    assert 'id="update"' in (REPO / "device/home/web/static/index.html").read_text()
    assert "update.reason" in (REPO / "device/home/web/static/app.js").read_text()


def test_a_bin_pinned_to_a_model_file_is_told_so_and_tries_again_later(make_bin, tmp_path, source):
    config = fast_config(tmp_path, updates={"url": "https://updates.example/bins", "root": "root.json"})
    source.offering = "colour3-float32"
    watch = Watch()
    with make_bin("red", config=config, observers=[watch], update_source=source) as b:
        b.daemon.updates.updater.retry_s = 30.0
        b.daemon.updates.updater.check_now()
        failed = watch.until(lambda u: u["state"] == "failed", "the install failing")
        assert b.item().model_version == OLD
    assert "classifier.model pins the bin to" in failed["reason"] and failed["not_retried"] is None
    retry_in = _seconds_until(failed["next_check_at"], failed["last_check_at"])
    assert 20 < retry_in < 40  # a passing failure: the backoff, not the 6-hour interval
    assert not (config.paths.state_dir / "updates" / "not-retried.json").exists()


def test_a_simulation_never_updates_the_real_bins_model_store(tmp_path):
    from smartbin.device.commands.simulate import simulation_config

    config = fast_config(tmp_path, updates={"url": "https://updates.example/bins", "root": "root.json"})
    simulated = simulation_config(
        config, model=None, fast=True, state_dir=tmp_path / "sim", images=tmp_path / "photos"
    )
    assert simulated.updates.url == "" and simulated.paths.models_dir == config.paths.models_dir
