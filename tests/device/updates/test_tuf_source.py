"""The bin's TUF source against a real repository (smartbin fleet) served by a real nginx on 127.0.0.1.

Each refusal (a tampered archive or targets, metadata signed by another key, an expired timestamp,
an older timestamp replayed) raises UpdateError(refused=True) and leaves the live model as it was:
the source never installs, and the test's model store still runs the model it ran before.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartbin.deploy.fleet_repo import init_repo, publish, refresh, rotate
from smartbin.device.config import load_config
from smartbin.device.updates.settings import UpdatesConfig
from smartbin.device.updates.source import Offer, UpdateError
from smartbin.device.updates.tuf_source import TufSource, rollout_bucket
from smartbin.device.vision.store import ModelStore, verify_bundle

from ...device.updates.nginx import free_port

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
C4 = MODELS / "colour4-int8"  # the bundle published
C3 = MODELS / "colour3-int8"  # what the bin runs before
C3F = MODELS / "colour3-float32"


@dataclass
class Fleet:
    repo: Path
    keys: Path
    url: str
    root: Path  # the root.json copied to the bins at init

    def publish(self, bundle: Path = C4, channel: str = "stable", percent: int = 100) -> None:
        publish(self.repo, self.keys, bundle, channel, percent)

    def source(self, state: Path, bin_id: str = "bin-1", **settings: object) -> TufSource:
        config = UpdatesConfig(**{"url": self.url, "root": self.root, "max_rate_kb_s": 0, **settings})
        return TufSource(config, bin_id, state, socket_timeout=5)


@pytest.fixture
def fleet(tmp_path: Path, nginx_for) -> Fleet:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    root = tmp_path / "bin-root.json"
    shutil.copyfile(repo / "metadata" / "root.json", root)
    return Fleet(repo, keys, nginx_for(repo).url, root)


@pytest.fixture
def live(tmp_path: Path) -> ModelStore:
    """A bin's model store running colour3-int8: what every refusal must leave live."""
    store = ModelStore(tmp_path / "models")
    store.install(C3, load_config(None))
    return store


def archive_file(fleet: Fleet, version: str = "colour4-int8-1") -> Path:
    (found,) = (fleet.repo / "targets" / "bundles").glob(f"*.{version}.tar")
    return found


def newest(fleet: Fleet, role: str) -> Path:
    versions = sorted(
        int(p.name.split(".")[0]) for p in (fleet.repo / "metadata").glob(f"[0-9]*.{role}.json")
    )
    return fleet.repo / "metadata" / f"{versions[-1]}.{role}.json"


def assert_refused(call, live: ModelStore, match: str) -> UpdateError:
    with pytest.raises(UpdateError, match=match) as caught:
        call()
    assert caught.value.refused, str(caught.value)
    assert "\n" not in str(caught.value)
    assert live.current == "colour3-int8-1"  # the live model untouched
    return caught.value


def test_a_published_bundle_is_offered_fetched_and_passes_the_stores_checks(fleet, tmp_path, live):
    source = fleet.source(tmp_path / "state")
    assert source.offer() is None  # an empty channel offers nothing
    fleet.publish()
    offer = source.offer()
    assert offer is not None
    assert (offer.channel, offer.version, offer.target) == (
        "stable",
        "colour4-int8-1",
        "bundles/colour4-int8-1.tar",
    )
    assert offer.length == archive_file(fleet).stat().st_size
    assert archive_file(fleet).name.startswith(offer.sha256)  # consistent snapshots: hash-prefixed, cacheable
    bundle = source.fetch(offer)
    assert bundle == tmp_path / "state" / "updates" / "bundles" / "colour4-int8-1"
    assert sorted(p.name for p in bundle.iterdir()) == ["labels.txt", "manifest.json", "model.tflite"]
    config = load_config(None)
    assert verify_bundle(bundle, config).version == "colour4-int8-1"
    assert live.current == "colour3-int8-1"  # fetching installs nothing; the daemon does, through the store
    assert live.install(bundle, config).current == "colour4-int8-1"
    assert not list((tmp_path / "state" / "updates" / "downloads").iterdir())
    assert source.offer() == offer  # the next check, from the cached metadata: the same offer


def test_another_channel_offers_nothing(fleet, tmp_path):
    fleet.publish(channel="beta")
    assert fleet.source(tmp_path / "state", channel="stable").offer() is None
    assert fleet.source(tmp_path / "state", channel="beta").offer().version == "colour4-int8-1"


def test_a_staged_rollout_reaches_the_same_share_of_bins_every_time(fleet, tmp_path):
    bins = [f"bin-{i}" for i in range(40)]
    inside = next(b for b in bins if rollout_bucket(b, "stable") < 30)
    outside = next(b for b in bins if rollout_bucket(b, "stable") >= 30)
    assert rollout_bucket(inside, "stable") == rollout_bucket(inside, "stable")
    assert 8 <= sum(rollout_bucket(b, "stable") < 30 for b in bins) <= 20  # about 30 % of 40
    fleet.publish(percent=30)
    assert fleet.source(tmp_path / "in", inside).offer().version == "colour4-int8-1"
    assert fleet.source(tmp_path / "out", outside).offer() is None
    assert fleet.source(tmp_path / "out", outside).offer() is None  # deterministic
    fleet.publish(percent=100)
    assert fleet.source(tmp_path / "out", outside).offer().version == "colour4-int8-1"


def test_a_tampered_archive_is_refused_and_downloaded_again_next_time(fleet, tmp_path, live):
    fleet.publish()
    source = fleet.source(tmp_path / "state")
    offer = source.offer()
    path = archive_file(fleet)
    good = path.read_bytes()
    bad = bytearray(good)
    bad[-2000] ^= 0xFF  # inside the model, same length
    path.write_bytes(bytes(bad))
    assert_refused(lambda: source.fetch(offer), live, "does not match its signed length and hash")
    assert not (tmp_path / "state" / "updates" / "bundles").exists()  # nothing of it unpacked
    path.write_bytes(good + b"\0" * 1024)  # longer than signed
    assert_refused(lambda: source.fetch(offer), live, "longer than its signed length")
    path.write_bytes(good)
    assert source.fetch(offer).name == "colour4-int8-1"


def test_tampered_targets_metadata_is_refused(fleet, tmp_path, live):
    fleet.publish()
    targets = newest(fleet, "targets")
    data = json.loads(targets.read_text())
    data["signed"]["targets"]["bundles/colour4-int8-1.tar"]["length"] += 1  # the signature no longer fits
    targets.write_text(json.dumps(data))
    assert_refused(fleet.source(tmp_path / "state").offer, live, "not signed by the repository's keys")


def test_metadata_and_bundles_signed_by_another_key_are_refused(fleet, tmp_path, live):
    """Someone who controls the server serves a repository of their own keys: their timestamp,
    snapshot, targets and bundle replace the real ones."""
    fleet.publish()
    source = fleet.source(tmp_path / "state")
    assert source.offer().version == "colour4-int8-1"
    other_repo, other_keys = tmp_path / "other", tmp_path / "other-keys"
    init_repo(other_repo, other_keys)
    for _ in range(3):  # versions above the real ones, so that only the signatures give it away
        publish(other_repo, other_keys, C3F, "stable")
    shutil.copytree(other_repo / "targets", fleet.repo / "targets", dirs_exist_ok=True)
    for path in (other_repo / "metadata").glob("*.json"):
        if "root" not in path.name:
            shutil.copyfile(path, fleet.repo / "metadata" / path.name)
    assert_refused(source.offer, live, "not signed by the repository's keys")
    assert_refused(fleet.source(tmp_path / "new-bin").offer, live, "not signed by the repository's keys")


def test_an_expired_timestamp_is_refused(fleet, tmp_path, live):
    fleet.publish()
    refresh(fleet.repo, fleet.keys, now=datetime.now(UTC) - timedelta(days=2))  # expired a day ago
    assert_refused(fleet.source(tmp_path / "state").offer, live, "expired metadata")
    refresh(fleet.repo, fleet.keys)  # the timer runs again
    assert fleet.source(tmp_path / "state").offer().version == "colour4-int8-1"


def test_an_older_timestamp_replayed_after_a_newer_one_is_refused(fleet, tmp_path, live):
    fleet.publish(C3F)
    metadata = fleet.repo / "metadata"
    old = {p.name: p.read_bytes() for p in metadata.glob("*.json")}
    fleet.publish(C4)
    source = fleet.source(tmp_path / "state")
    assert source.offer().version == "colour4-int8-1"
    (metadata / "timestamp.json").write_bytes(old["timestamp.json"])  # a mirror serving yesterday's state
    assert_refused(source.offer, live, "older than this bin already saw")
    # a bin that never saw the newer one takes the old state: freshness is all the timestamp proves
    assert fleet.source(tmp_path / "new-bin").offer().version == "colour3-float32-1"


def test_bins_follow_key_rotation(fleet, tmp_path, live):
    fleet.publish(C3F)
    source = fleet.source(tmp_path / "state")
    assert source.offer().version == "colour3-float32-1"
    rotate(fleet.repo, fleet.keys, "targets")
    rotate(fleet.repo, fleet.keys, "timestamp")
    rotate(fleet.repo, fleet.keys, "root")
    fleet.publish(C4)
    offer = source.offer()  # the bin still holds root v1: it walks to v4, each signed by the one before
    assert offer.version == "colour4-int8-1"
    assert source.fetch(offer).name == "colour4-int8-1"
    assert fleet.source(tmp_path / "new-bin").offer() == offer  # a new bin given root v1 gets there too
    retired = fleet.keys / "retired"
    (old_targets,) = retired.glob("targets-*.pem")
    shutil.copyfile(old_targets, fleet.keys / "targets.pem")  # a stolen, revoked targets key
    with pytest.raises(Exception, match="not a targets key of this repository"):
        fleet.publish(C3)


def test_a_server_that_is_down_is_a_passing_failure(fleet, tmp_path, live):
    source = fleet.source(tmp_path / "state", url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpdateError, match="connection refused") as caught:
        source.offer()
    assert not caught.value.refused and live.current == "colour3-int8-1"
    fleet.publish()
    good = fleet.source(tmp_path / "state2")
    offer = good.offer()
    missing = Offer(offer.channel, offer.version, offer.target, offer.length, offer.sha256)
    archive_file(fleet).rename(tmp_path / "away.tar")  # a CDN that has not caught up yet
    with pytest.raises(UpdateError, match="HTTP 404") as caught:
        good.fetch(missing)
    assert not caught.value.refused


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str, *, no_proxy: str) -> None:
    for name in ("HTTP_PROXY", "all_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", url)
    monkeypatch.setenv("no_proxy", no_proxy)


def test_a_bin_behind_a_proxy_fetches_metadata_and_bundle_through_it(fleet, tmp_path, nginx_for, monkeypatch):
    proxy = nginx_for(proxy_to=fleet.url)
    use_proxy(monkeypatch, proxy.url, no_proxy="bins.example")
    fleet.publish()
    source = fleet.source(tmp_path / "state")
    offer = source.offer()
    assert source.fetch(offer).name == "colour4-int8-1"
    through = [line.split()[1] for line in proxy.requests()]
    assert f"{fleet.url}/metadata/timestamp.json" in through
    assert f"{fleet.url}/targets/bundles/{offer.sha256}.colour4-int8-1.tar" in through


def test_no_proxy_sends_the_bundle_past_the_proxy(fleet, tmp_path, nginx_for, monkeypatch):
    proxy = nginx_for(proxy_to=fleet.url)
    use_proxy(monkeypatch, proxy.url, no_proxy="127.0.0.1")
    fleet.publish()
    source = fleet.source(tmp_path / "state")
    assert source.fetch(source.offer()).name == "colour4-int8-1"
    assert proxy.requests() == []


def test_a_cut_download_resumes_where_it_stopped_at_a_bounded_rate(fleet, tmp_path, nginx_for):
    fleet.publish()
    source = fleet.source(tmp_path / "state", max_rate_kb_s=2)
    offer = source.offer()
    downloads = tmp_path / "state" / "updates" / "downloads"
    downloads.mkdir(parents=True)
    whole = archive_file(fleet).read_bytes()
    (downloads / f"{offer.sha256}.part").write_bytes(whole[:-3000])  # the link dropped 3000 bytes short
    start = time.monotonic()
    assert source.fetch(offer).name == "colour4-int8-1"
    elapsed = time.monotonic() - start
    assert elapsed >= 1.0, elapsed  # 3000 bytes at 2 KB/s
    log = (tmp_path / "nginx0" / "access.log").read_text()
    assert f'{offer.sha256}.colour4-int8-1.tar HTTP/1.1" 206 3000 ' in log  # only the rest travelled
