"""smartbin fleet init, publish, refresh and rotate: the TUF repository on disk, and one-line errors.

What a bin makes of the repository (served by nginx) is in tests/device/updates/test_tuf_source.py.
"""

from __future__ import annotations

import json
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from smartbin.deploy.fleet_repo import channels, init_repo, refresh
from smartbin.device.cli import main

from .conftest import FIXTURE_MODELS

C4 = FIXTURE_MODELS / "colour4-int8"
C3 = FIXTURE_MODELS / "colour3-int8"
ROLES = ("root", "targets", "snapshot", "timestamp")


def smartbin(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def meta(repo: Path, name: str) -> Metadata:
    return Metadata.from_file(str(repo / "metadata" / name))


def one_error(capsys, *args: str | Path) -> str:
    code, out, err = smartbin(capsys, *args)
    assert code == 1 and out == "", (code, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("smartbin: error: "), err
    return err.strip()


def test_init_makes_keys_and_a_signed_empty_repository(tmp_path, capsys):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    code, out, _ = smartbin(capsys, "fleet", "init", repo, "--keys", keys, "--timestamp-expires-hours", "6")
    assert code == 0
    assert f"copy {repo}/metadata/root.json to each bin" in out and f"move {keys}/root.pem offline" in out
    for role in ROLES:
        assert stat.S_IMODE((keys / f"{role}.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    root = meta(repo, "1.root.json")
    assert root.signed.consistent_snapshot and root.signed.version == 1
    assert {r: len(root.signed.roles[r].keyids) for r in ROLES} == dict.fromkeys(ROLES, 1)
    assert len(set(root.signed.keys)) == 4  # a key of its own for each role
    root.verify_delegate("root", root)
    assert (repo / "metadata" / "root.json").read_bytes() == (repo / "metadata" / "1.root.json").read_bytes()
    timestamp = meta(repo, "timestamp.json").signed
    assert timedelta(hours=5) < timestamp.expires - datetime.now(UTC) <= timedelta(hours=6)
    assert meta(repo, "1.snapshot.json").signed.meta["targets.json"].version == 1
    assert not list((repo / "metadata").glob("*.pem"))  # no private key in what is served
    # never over an existing repository or keys
    assert "already holds a repository" in one_error(capsys, "fleet", "init", repo, "--keys", tmp_path / "k2")
    assert "keys are never overwritten" in one_error(capsys, "fleet", "init", tmp_path / "r2", "--keys", keys)


def test_publish_signs_a_bundle_and_its_channel(tmp_path, capsys):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    code, out, _ = smartbin(
        capsys, "fleet", "publish", C4, "--repo", repo, "--keys", keys, "--channel", "beta", "--percent", "20"
    )
    assert code == 0
    assert out.strip() == (
        "published colour4-int8-1 on channel beta for 20% of bins (target bundles/colour4-int8-1.tar, targets v2)"
    )
    targets = meta(repo, "2.targets.json").signed
    archive = targets.targets["bundles/colour4-int8-1.tar"]
    assert archive.custom["version"] == "colour4-int8-1"
    served = repo / "targets" / "bundles" / f"{archive.hashes['sha256']}.colour4-int8-1.tar"
    archive.verify_length_and_hashes(served.read_bytes())
    assert channels(repo) == {
        "beta": {"version": "colour4-int8-1", "target": "bundles/colour4-int8-1.tar", "percent": 20}
    }
    assert meta(repo, "timestamp.json").signed.snapshot_meta.version == 2  # released at once
    assert meta(repo, "2.snapshot.json").signed.meta["targets.json"].version == 2
    # the same version again is fine (a new percent); with another model it is not
    other = Path(shutil.copytree(C3, tmp_path / "fake"))
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "version": "colour4-int8-1"}))
    err = one_error(capsys, "fleet", "publish", other, "--repo", repo, "--keys", keys, "--channel", "beta")
    assert "already published with a different model" in err


def test_publish_without_the_online_keys_waits_for_refresh(tmp_path, capsys):
    """The publisher's machine holds the targets key; the online machine, snapshot and timestamp."""
    repo, keys, online = tmp_path / "repo", tmp_path / "keys", tmp_path / "online"
    init_repo(repo, keys)
    online.mkdir()
    for role in ("snapshot", "timestamp"):
        (keys / f"{role}.pem").rename(online / f"{role}.pem")
    code, out, _ = smartbin(
        capsys, "fleet", "publish", C4, "--repo", repo, "--keys", keys, "--channel", "stable"
    )
    assert code == 0 and "once 'smartbin fleet refresh' runs where the snapshot and timestamp keys are" in out
    assert meta(repo, "timestamp.json").signed.version == 1  # bins still see the empty repository
    code, out, _ = smartbin(capsys, "fleet", "refresh", "--repo", repo, "--keys", online)
    assert (code, out.strip()) == (0, f"refreshed: signed snapshot, timestamp in {repo}")
    assert meta(repo, "timestamp.json").signed.version == 2
    assert meta(repo, "2.snapshot.json").signed.meta["targets.json"].version == 2
    code, out, _ = smartbin(capsys, "fleet", "refresh", "--repo", repo, "--keys", online)
    assert out.strip() == f"refreshed: signed timestamp in {repo}"  # nothing new: the timestamp only
    assert meta(repo, "timestamp.json").signed.version == 3


def test_refresh_renews_what_is_due_and_warns_of_what_it_cannot_sign(tmp_path):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys, {"targets": timedelta(days=2), "root": timedelta(days=2)})
    later = datetime.now(UTC) + timedelta(days=1, hours=1)
    done = refresh(repo, keys, now=later)
    assert done.signed == ("targets", "snapshot", "timestamp") and len(done.warnings) == 1
    assert "root expires" in done.warnings[0] and "fleet rotate root" in done.warnings[0]
    (keys / "targets.pem").unlink()
    done = refresh(repo, keys, now=later + timedelta(days=1, hours=1))
    assert done.signed == ("timestamp",)
    assert any(w.startswith("targets expires") for w in done.warnings)


def test_rotate_revokes_the_old_key_in_a_new_root(tmp_path, capsys):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    old_root = meta(repo, "1.root.json")
    code, out, _ = smartbin(capsys, "fleet", "rotate", "root", "--repo", repo, "--keys", keys)
    assert code == 0 and "in root v2" in out and "destroy it" in out
    new_root = meta(repo, "2.root.json")
    old_root.verify_delegate("root", new_root)  # the old root key vouches for the new root ...
    new_root.verify_delegate("root", new_root)  # ... and so does the new one
    assert not set(old_root.signed.roles["root"].keyids) & set(new_root.signed.roles["root"].keyids)
    code, out, _ = smartbin(capsys, "fleet", "rotate", "timestamp", "--repo", repo, "--keys", keys)
    assert code == 0 and "in root v3; signed snapshot, timestamp anew" in out
    root3 = meta(repo, "3.root.json")
    new_root.verify_delegate("root", root3)
    root3.verify_delegate("timestamp", meta(repo, "timestamp.json"))
    assert len(list((keys / "retired").glob("*.pem"))) == 2


def test_user_mistakes_are_one_line(tmp_path, capsys):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    args = ["--repo", repo, "--keys", keys, "--channel", "stable"]
    assert "is not a fleet repository" in one_error(capsys, "fleet", "publish", C4, *args)
    init_repo(repo, keys)
    assert "no manifest.json" in one_error(capsys, "fleet", "publish", tmp_path, *args)
    assert "give 1 to 100" in one_error(capsys, "fleet", "publish", C4, *args, "--percent", "101")
    bad_channel = ["--repo", repo, "--keys", keys, "--channel", "Not Good"]
    assert "--channel 'Not Good'" in one_error(capsys, "fleet", "publish", C4, *bad_channel)
    nokeys = ["--repo", repo, "--keys", tmp_path / "none", "--channel", "stable"]
    assert "no targets key here; publishing needs it" in one_error(capsys, "fleet", "publish", C4, *nokeys)
    init_repo(tmp_path / "other", tmp_path / "other-keys")
    wrong = ["--repo", repo, "--keys", tmp_path / "other-keys", "--channel", "stable"]
    assert "is not a targets key of this repository" in one_error(capsys, "fleet", "publish", C4, *wrong)
    (keys / "targets.pem").write_text("not a key")
    assert "not an unencrypted PEM private key" in one_error(capsys, "fleet", "publish", C4, *args)
    assert "no root key here; every rotation needs it" in one_error(
        capsys, "fleet", "rotate", "targets", "--repo", repo, "--keys", tmp_path / "none"
    )
    with pytest.raises(SystemExit) as exited:  # argparse: a bad number before any work
        main(["fleet", "publish", str(C4), *map(str, args), "--percent", "0"])
    assert exited.value.code == 2
