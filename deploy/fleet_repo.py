"""A TUF repository of model bundles, as static files any HTTP server, object store or CDN can serve.

Layout of ``REPO``::

    metadata/N.root.json        every root version (bins walk from the root they were given to the newest)
    metadata/root.json          the newest root: the file to copy to a new bin as [updates] root
    metadata/N.targets.json     the targets, signed by the targets key (versioned: consistent snapshots)
    metadata/N.snapshot.json    which targets version is current, signed by the snapshot key
    metadata/timestamp.json     which snapshot is current, short-lived, signed by the timestamp key
    metadata/targets.json, snapshot.json   the newest of each, for this tool (bins read the versioned ones)
    targets/bundles/<sha256>.<version>.tar   a bundle's own files (store.bundle_tar)
    targets/channels/<sha256>.<channel>.json  {"version", "target", "percent"}: what a channel offers
                                (a halted rollout: percent 0, with "halted", "halted_at", "was_percent")
    fleet.json                  the lifetimes chosen at init (public, like the metadata)
    .lock                       held while a command changes the repository

``KEYS`` holds the private keys as ``<role>.pem`` (ed25519, PKCS#8, mode 0600); each machine holds
only the keys its job needs (docs/deploy.md, "Fleets: signed updates"). Every function here signs
only what its keys allow and says what is left for another machine.

The Update Framework does the signing and, on the bin, the verifying (python-tuf's metadata API
and ngclient); this module only decides what to sign when. ``tuf`` is imported here and only here
on the desktop side.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from smartbin.device.errors import SmartbinError
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.store import bundle_tar

T = TypeVar("T")
ROLES = ("root", "targets", "snapshot", "timestamp")
CHANNEL_PATTERN = "^[a-z0-9_-]{1,32}$"  # as [updates] channel
SETTINGS_NAME = "fleet.json"

#: default lifetimes: root is signed rarely and offline, timestamp by a timer (fleet refresh)
DEFAULT_LIFETIMES = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(hours=24),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- keys ------------------------------------------------------------------------------------


def key_path(keys: Path, role: str) -> Path:
    return keys / f"{role}.pem"


def _new_key(keys: Path, role: str) -> CryptoSigner:
    signer = CryptoSigner.generate_ed25519()
    _write_atomic(key_path(keys, role), signer.private_bytes, mode=0o600)
    return signer


def _load_signer(keys: Path, role: str, root: Root) -> CryptoSigner | None:
    """The private key of ``role`` from KEYS, None when this machine does not hold it."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = key_path(keys, role)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SmartbinError(f"{path}: cannot read the {role} key ({exc.strerror})") from None
    try:
        signer = CryptoSigner(load_pem_private_key(data, None))
    except (ValueError, TypeError):
        raise SmartbinError(f"{path}: not an unencrypted PEM private key; give the {role} key") from None
    if signer.public_key.keyid not in root.roles[role].keyids:
        raise SmartbinError(
            f"{path} is not a {role} key of this repository (its root lists "
            f"{', '.join(k[:12] for k in root.roles[role].keyids)}); give the right --keys"
        )
    return signer


def _need_signer(keys: Path, role: str, root: Root, why: str) -> CryptoSigner:
    signer = _load_signer(keys, role, root)
    if signer is None:
        raise SmartbinError(f"{key_path(keys, role)}: no {role} key here; {why} needs it")
    return signer


# --- the repository on disk ------------------------------------------------------------------


@dataclass
class Repo:
    dir: Path
    lifetimes: dict[str, timedelta]
    held: list[Metadata[Any]] | None = None  # timestamps held back until a new root is written

    @property
    def metadata(self) -> Path:
        return self.dir / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.dir / "targets"

    @property
    def root_file(self) -> Path:
        return self.metadata / "root.json"

    def load(self, role: str) -> Metadata[Any]:
        path = self.metadata / f"{role}.json"
        try:
            return Metadata.from_file(str(path))
        except FileNotFoundError:
            raise SmartbinError(
                f"{path}: missing; is {self.dir} a repository made by 'smartbin fleet init'?"
            ) from None
        except Exception as exc:  # tuf's DeserializationError, a damaged file
            raise SmartbinError(f"{path}: not TUF metadata ({exc}); restore it from a backup") from None

    def write(self, md: Metadata[Any]) -> None:
        """Versioned first (what bins read), then the unversioned copy; the timestamp last of all."""
        role = md.signed.type
        if role == Timestamp.type and self.held is not None:
            self.held.append(md)
            return
        data = md.to_bytes()
        if role != Timestamp.type:
            _write_atomic(self.metadata / f"{md.signed.version}.{role}.json", data)
        _write_atomic(self.metadata / f"{role}.json", data)

    def write_target(self, info: TargetFile, data: bytes) -> TargetFile:
        """The file under its hash-prefixed name (what bins ask for with consistent snapshots)."""
        directory, _, name = info.path.rpartition("/")
        _write_atomic(self.targets_dir / directory / f"{info.hashes['sha256']}.{name}", data)
        return info


def open_repo(repo_dir: Path) -> Repo:
    settings = repo_dir / SETTINGS_NAME
    if not (repo_dir / "metadata" / "root.json").is_file() or not settings.is_file():
        raise SmartbinError(
            f"{repo_dir} is not a fleet repository; make one with 'smartbin fleet init {repo_dir} --keys DIR'"
        )
    try:
        raw = json.loads(settings.read_text())["lifetimes_s"]
        lifetimes = {role: timedelta(seconds=float(raw[role])) for role in ROLES}
    except (ValueError, KeyError, TypeError):
        raise SmartbinError(
            f"{settings}: damaged; it should hold lifetimes_s for {', '.join(ROLES)}"
        ) from None
    return Repo(repo_dir, lifetimes)


def _changes_repo(func: Callable[..., T]) -> Callable[..., T]:
    """``func(repo_dir, ...)`` on an initialised repository, one change at a time (a refresh timer
    may fire during a publish)."""

    @functools.wraps(func)
    def locked(repo_dir: Path, *args: Any, **kwargs: Any) -> T:
        open_repo(repo_dir)  # one line for a folder that is not a repository
        with open(repo_dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            return func(repo_dir, *args, **kwargs)

    return locked


def _bump(md: Metadata[Any], lifetime: timedelta, now: datetime) -> None:
    md.signed.version += 1
    md.signed.expires = now + lifetime


# --- init ------------------------------------------------------------------------------------


def init_repo(repo_dir: Path, keys: Path, lifetimes: dict[str, timedelta] | None = None) -> Repo:
    """New keys for every role in KEYS and an empty repository in REPO, signed and valid."""
    lifetimes = {**DEFAULT_LIFETIMES, **(lifetimes or {})}
    if (repo_dir / "metadata").exists() and any((repo_dir / "metadata").iterdir()):
        raise SmartbinError(f"{repo_dir}/metadata already holds a repository; give an empty REPO_DIR")
    existing = [key_path(keys, r) for r in ROLES if key_path(keys, r).exists()]
    if existing:
        raise SmartbinError(
            f"{existing[0]} already exists; give an empty --keys folder (keys are never overwritten)"
        )
    try:
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        repo_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SmartbinError(f"{exc.filename}: cannot create it ({exc.strerror})") from None
    now = _now()
    signers = {role: _new_key(keys, role) for role in ROLES}
    root = Metadata(Root(expires=now + lifetimes["root"], consistent_snapshot=True))
    for role, signer in signers.items():
        root.signed.add_key(signer.public_key, role)
    root.sign(signers["root"])
    repo = Repo(repo_dir, lifetimes)
    _write_atomic(
        repo_dir / SETTINGS_NAME,
        (
            json.dumps({"lifetimes_s": {r: t.total_seconds() for r, t in lifetimes.items()}}, indent=2) + "\n"
        ).encode(),
    )
    repo.write(root)
    targets = Metadata(Targets(expires=now + lifetimes["targets"]))
    targets.sign(signers["targets"])
    repo.write(targets)
    _release(repo, root.signed, signers["snapshot"], signers["timestamp"], now)
    return repo


def _release(
    repo: Repo, root: Root, snapshot_signer: CryptoSigner, timestamp_signer: CryptoSigner, now: datetime
) -> tuple[int, int]:
    """A new snapshot naming the newest targets, and a new timestamp naming that snapshot."""
    targets = repo.load(Targets.type)
    try:
        snapshot = repo.load(Snapshot.type)
        _bump(snapshot, repo.lifetimes["snapshot"], now)
    except SmartbinError:
        if (repo.metadata / "snapshot.json").exists():
            raise
        snapshot = Metadata(Snapshot(expires=now + repo.lifetimes["snapshot"]))
    snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    snapshot.sign(snapshot_signer)
    repo.write(snapshot)
    _write_timestamp(repo, snapshot.signed.version, timestamp_signer, now)
    return snapshot.signed.version, targets.signed.version


def _write_timestamp(repo: Repo, snapshot_version: int, signer: CryptoSigner, now: datetime) -> int:
    path = repo.metadata / "timestamp.json"
    if path.exists():
        timestamp = repo.load(Timestamp.type)
        _bump(timestamp, repo.lifetimes["timestamp"], now)
    else:
        timestamp = Metadata(Timestamp(expires=now + repo.lifetimes["timestamp"]))
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot_version)
    timestamp.sign(signer)
    repo.write(timestamp)
    return timestamp.signed.version


# --- publish ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    version: str
    target: str
    channel: str
    percent: int
    targets_version: int
    released: bool  # snapshot and timestamp signed too (else: 'fleet refresh' where their keys are)


@_changes_repo
def publish(
    repo_dir: Path,
    keys: Path,
    bundle_dir: Path,
    channel: str,
    percent: int = 100,
    *,
    now: datetime | None = None,
) -> Published:
    """Add a bundle's archive and point ``channel`` at it, signed; released when this machine holds
    the snapshot and timestamp keys."""
    if not re.match(CHANNEL_PATTERN, channel):
        raise SmartbinError(
            f"--channel {channel!r}: use 1-32 of a-z, 0-9, '_' and '-' (as [updates] channel)"
        )
    if not 1 <= percent <= 100:
        raise SmartbinError(f"--percent {percent}: give 1 to 100 (the share of bins offered this bundle)")
    now = now or _now()
    repo = open_repo(repo_dir)
    root = repo.load(Root.type).signed
    targets_signer = _need_signer(keys, "targets", root, "publishing")
    bundle = load_bundle(bundle_dir)  # the manifest, the model's sha256: what deploy checks here too
    archive_path = f"bundles/{bundle.version}.tar"
    targets = repo.load(Targets.type)
    old = targets.signed.targets.get(archive_path)
    archive = bundle_tar(bundle)
    info = TargetFile.from_data(archive_path, archive, ["sha256"])
    if old is not None and old.hashes != info.hashes:
        raise SmartbinError(
            f"version {bundle.version} is already published with a different model; give the new bundle its own version"
        )
    info.unrecognized_fields["custom"] = {"version": bundle.version, "model_sha256": bundle.sha256}
    targets.signed.targets[archive_path] = repo.write_target(info, archive)
    pointer = {"version": bundle.version, "target": archive_path, "percent": percent}
    released = _point_channel(repo, keys, root, targets, targets_signer, channel, pointer, now)
    return Published(bundle.version, archive_path, channel, percent, targets.signed.version, released)


def _point_channel(
    repo: Repo,
    keys: Path,
    root: Root,
    targets: Metadata[Targets],
    signer: CryptoSigner,
    channel: str,
    pointer: dict[str, Any],
    now: datetime,
) -> bool:
    """Write ``channel``'s pointer, sign the targets anew; whether snapshot and timestamp were too."""
    path = f"channels/{channel}.json"
    data = (json.dumps(pointer, indent=2) + "\n").encode()
    targets.signed.targets[path] = repo.write_target(TargetFile.from_data(path, data, ["sha256"]), data)
    _bump(targets, repo.lifetimes["targets"], now)
    targets.sign(signer)
    repo.write(targets)
    return _release_if_held(repo, keys, root, now)


@dataclass(frozen=True)
class Halted:
    channel: str
    version: str
    was_percent: int
    released: bool


@_changes_repo
def halt(repo_dir: Path, keys: Path, channel: str, reason: str, *, now: datetime | None = None) -> Halted:
    """Stop ``channel``'s rollout: its pointer offers its bundle to no more bins (percent 0) and
    says why. Bins that run it keep it; ``fleet publish`` starts a rollout again."""
    now = now or _now()
    repo = open_repo(repo_dir)
    pointer = channels(repo_dir).get(channel)
    if pointer is None:
        raise SmartbinError(f"no channel {channel!r} in {repo_dir}; 'smartbin fleet publish' makes one")
    root = repo.load(Root.type).signed
    signer = _need_signer(keys, "targets", root, "halting a rollout")
    was = pointer.get("was_percent", pointer["percent"])
    halted = {**pointer, "percent": 0, "was_percent": was, "halted": reason, "halted_at": now.isoformat()}
    released = _point_channel(repo, keys, root, repo.load(Targets.type), signer, channel, halted, now)
    return Halted(channel, pointer["version"], was, released)


def _release_if_held(repo: Repo, keys: Path, root: Root, now: datetime) -> bool:
    snapshot_signer = _load_signer(keys, "snapshot", root)
    timestamp_signer = _load_signer(keys, "timestamp", root)
    if snapshot_signer is None or timestamp_signer is None:
        return False
    _release(repo, root, snapshot_signer, timestamp_signer, now)
    return True


def channels(repo_dir: Path) -> dict[str, dict[str, Any]]:
    """What each channel offers now, from the repository's own files."""
    repo = open_repo(repo_dir)
    found = {}
    for path, info in repo.load(Targets.type).signed.targets.items():
        if path.startswith("channels/") and path.endswith(".json"):
            directory, _, name = path.rpartition("/")
            data = (repo.targets_dir / directory / f"{info.hashes['sha256']}.{name}").read_bytes()
            found[name.removesuffix(".json")] = json.loads(data)
    return found


# --- refresh ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    signed: tuple[str, ...]  # the roles signed anew
    warnings: tuple[str, ...]


@_changes_repo
def refresh(repo_dir: Path, keys: Path, *, now: datetime | None = None) -> Refreshed:
    """Sign a new timestamp; a new snapshot too when the targets changed or it passed half its
    lifetime; a new targets when its key is here and it passed half its lifetime. Say what expires
    soon that this machine cannot sign."""
    now = now or _now()
    repo = open_repo(repo_dir)
    root_md = repo.load(Root.type)
    root = root_md.signed
    signed: list[str] = []
    warnings: list[str] = []

    def due(md: Metadata[Any], role: str) -> bool:
        return md.signed.expires - now < repo.lifetimes[role] / 2

    targets = repo.load(Targets.type)
    targets_signer = _load_signer(keys, "targets", root)
    if due(targets, "targets"):
        if targets_signer is not None:
            _bump(targets, repo.lifetimes["targets"], now)
            targets.sign(targets_signer)
            repo.write(targets)
            signed.append("targets")
        else:
            warnings.append(
                f"targets expires {targets.signed.expires:%Y-%m-%d %H:%M} UTC; publish, or refresh where the targets key is"
            )
    if root.expires - now < min(repo.lifetimes["root"] / 2, timedelta(days=30)):
        warnings.append(
            f"root expires {root.expires:%Y-%m-%d} UTC; sign a new root with the offline root key: "
            "'smartbin fleet rotate root' (or any rotation)"
        )
    timestamp_signer = _need_signer(keys, "timestamp", root, "refresh")
    snapshot = repo.load(Snapshot.type)
    snapshot_targets = snapshot.signed.meta["targets.json"].version
    if snapshot_targets != targets.signed.version or due(snapshot, "snapshot"):
        snapshot_signer = _need_signer(
            keys, "snapshot", root, "releasing new targets or renewing the snapshot"
        )
        _bump(snapshot, repo.lifetimes["snapshot"], now)
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        snapshot.sign(snapshot_signer)
        repo.write(snapshot)
        signed.append("snapshot")
    _write_timestamp(repo, snapshot.signed.version, timestamp_signer, now)
    signed.append("timestamp")
    return Refreshed(tuple(signed), tuple(warnings))


# --- rotation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotated:
    role: str
    old_keyids: tuple[str, ...]
    new_keyid: str
    root_version: int
    resigned: tuple[str, ...]
    pending: tuple[str, ...]  # roles that need signing where their keys are ('fleet refresh')


@_changes_repo
def rotate(repo_dir: Path, keys: Path, role: str, *, now: datetime | None = None) -> Rotated:
    """A new key for ``role`` in a new root version signed by the root key (for root: by the old
    and the new root key). The old key is revoked: moved to KEYS/retired/ to be destroyed."""
    if role not in ROLES:
        raise SmartbinError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    now = now or _now()
    repo = open_repo(repo_dir)
    root_md = repo.load(Root.type)
    old_root_signer = _need_signer(keys, "root", root_md.signed, "every rotation")
    old_keyids = tuple(root_md.signed.roles[role].keyids)
    retired = keys / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    old_file = key_path(keys, role)
    if old_file.exists():
        os.replace(old_file, retired / f"{role}-{'-'.join(k[:12] for k in old_keyids)}.pem")
    new_signer = _new_key(keys, role)
    for keyid in old_keyids:
        root_md.signed.revoke_key(keyid, role)
    root_md.signed.add_key(new_signer.public_key, role)
    _bump(root_md, repo.lifetimes["root"], now)
    root_md.sign(new_signer if role == "root" else old_root_signer)
    if role == "root":  # bins trust the new root only when the old root's keys signed it too
        root_md.sign(old_root_signer, append=True)
    root = root_md.signed

    # Bins read the new root first, then the timestamp, which names the new snapshot and targets: so
    # targets and snapshot (versioned, unseen until named) first, then the root, the timestamp last.
    repo.held = []
    resigned: list[str] = []
    pending: list[str] = []
    if role == "targets":
        targets = repo.load(Targets.type)
        _bump(targets, repo.lifetimes["targets"], now)
        targets.sign(new_signer)
        repo.write(targets)
        resigned.append("targets")
    if role in ("targets", "snapshot", "timestamp"):  # bins then fetch metadata signed by the new key
        if _release_if_held(repo, keys, root, now):
            resigned += ["snapshot", "timestamp"]
        else:
            pending += ["snapshot", "timestamp"]
    held, repo.held = repo.held, None
    repo.write(root_md)
    for md in held:
        repo.write(md)
    return Rotated(
        role, old_keyids, new_signer.public_key.keyid, root.version, tuple(resigned), tuple(pending)
    )
