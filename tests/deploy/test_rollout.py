"""Staged rollouts: where a channel's rollout stands among the bins' retained states, and the guard
that halts it (a real Mosquitto holding the bins' states, a real TUF repository, a bin's own TUF
source behind a real nginx)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

from smartbin.deploy.fleet_repo import channels, init_repo, publish
from smartbin.deploy.rollout import halt_reason, standing
from smartbin.device.cli import main
from smartbin.device.updates.settings import UpdatesConfig
from smartbin.device.updates.tuf_source import TufSource, rollout_bucket

from .conftest import FIXTURE_MODELS as MODELS
from .test_fleet_status import config_file

NEW, OLD = "colour3-float32-1", "colour3-int8-1"
POINTER = {"version": NEW, "target": f"bundles/{NEW}.tar", "percent": 100}


def bin_state(model: str, *, channel: str = "canary", failed: str | None = None, confidence=None) -> dict:
    update = {"channel": channel, "state": "up to date", "reason": None, "not_retried": None}
    if failed:
        skipped = {"version": NEW, "outcome": "failed", "reason": failed}
        update |= {"state": "failed", "reason": f"{NEW}: {failed}", "not_retried": skipped}
    return {"model_version": model, "update": update, "confidence": confidence or {}}


def medians(before: float, after: float, items: int = 50) -> dict:
    return {OLD: {"items": items, "median": before}, NEW: {"items": items, "median": after}}


def test_a_bin_is_bad_when_it_failed_the_bundle_or_its_confidence_fell():
    states = {
        "ok": bin_state(NEW, confidence=medians(0.90, 0.88)),
        "sick": bin_state(OLD, failed="health check failed: non-finite scores"),
        "unsure": bin_state(NEW, confidence=medians(0.90, 0.70)),
        "few-items": bin_state(NEW, confidence=medians(0.90, 0.50, items=5)),
        "waiting": bin_state(OLD),
        "stable": bin_state(NEW, channel="stable", failed="health check failed"),
        "no-updates": {"model_version": OLD, "update": None},
    }
    rollout = standing("canary", POINTER, states, max_drop=10, min_items=20)

    assert rollout.following == ["few-items", "ok", "sick", "unsure", "waiting"]
    assert rollout.reached == rollout.following  # 100 %
    assert rollout.running == ["few-items", "ok", "unsure"]
    assert sorted(rollout.bad) == ["sick", "unsure"]
    assert rollout.bad["sick"] == "failed: health check failed: non-finite scores"
    assert rollout.bad["unsure"] == "median confidence fell 20.0 points (0.90 -> 0.70)"
    assert halt_reason(rollout, max_bad=2) is None
    assert halt_reason(rollout, max_bad=1) == f"2 bins bad on {NEW} (more than 1): sick, unsure"


def test_a_partial_rollout_reaches_the_bins_below_its_share():
    ids = [f"bin-{i}" for i in range(40)]
    rollout = standing("canary", POINTER | {"percent": 30}, {i: bin_state(OLD) for i in ids})
    assert rollout.reached == sorted(i for i in ids if rollout_bucket(i, "canary") < 30)
    assert 0 < len(rollout.reached) < len(ids)


def test_the_guard_halts_a_rollout_that_more_than_n_bins_failed_and_no_further_bin_takes_it(
    tmp_path,
    broker,
    publisher,
    nginx_for,
    capsys,
):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    publish(repo, keys, MODELS / "colour3-float32", "canary", 100)
    now = datetime.now(UTC).isoformat()
    for bin_id, state in {
        "a": bin_state(OLD, failed="health check failed: non-finite scores"),
        "b": bin_state(OLD, failed="the model store refused it: input size 96 does not fit"),
        "c": bin_state(NEW),
    }.items():
        publisher.publish(f"smartbin/{bin_id}/availability", b"online", retain=True)
        publisher.publish(
            f"smartbin/{bin_id}/state",
            json.dumps(state | {"started": now, "uptime_s": 1}).encode(),
            retain=True,
        )
    config = config_file(tmp_path, broker.port)
    guard = ["fleet", "guard", "canary", "--repo", str(repo), "--keys", str(keys), "--config", config]

    assert main([*guard, "--max-bad", "2"]) == 0  # two bad bins are not more than two
    assert main([*guard, "--max-bad", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"canary: {NEW} to 100% of bins: 1 of 3 reached bins run it")
    assert out[-1].startswith(f"halted canary ({NEW} was offered to 100% of bins): 2 bins bad")

    pointer = channels(repo)["canary"]
    assert (pointer["percent"], pointer["was_percent"], pointer["version"]) == (0, 100, NEW)
    root = tmp_path / "root.json"
    shutil.copyfile(repo / "metadata" / "root.json", root)
    settings = UpdatesConfig(url=nginx_for(repo).url, root=root, channel="canary", max_rate_kb_s=0)
    assert TufSource(settings, "a-new-bin", tmp_path / "bin").offer() is None  # signed, and halted

    assert main(["fleet", "status", "--config", config, "--repo", str(repo)]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[-1].startswith(f"rollout canary: {NEW} to halted: 1 of 3 reached bins run it")
    assert "canary: failed (" in next(line for line in status if line.startswith("a "))
    assert main([*guard, "--max-bad", "5"]) == 1  # halted stays halted until the next publish

    publish(repo, keys, MODELS / "colour3-float32", "canary", 50)
    assert "halted" not in channels(repo)["canary"]
