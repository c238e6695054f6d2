"""The model store on a bin: bundles side by side, one symlink says which is live.

Layout of ``<models_dir>``::

    <version>/          one bundle per version (manifest.json, model.tflite, labels.txt)
    current  -> <version>   the live model (the daemon loads it; re-read on reload)
    previous -> <version>   the one before, kept for rollback
    .upload-<version>-<token>/   a bundle being uploaded (deploy); removed by `clean`

Pointers are switched atomically: a new symlink under a temporary name, then ``os.replace``
over the old one, then an fsync of the directory; an upload's files are fsynced before that
(bins lose power). A bundle becomes a
version directory only after it passed every check (checksum, labels fit this bin's config,
one inference with this bin's runtime), so an interrupted upload never touches ``current``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import Bundle, is_safe_name, load_bundle
from .errors import BundleError, SmartbinError

CURRENT = "current"
PREVIOUS = "previous"
UPLOAD_PREFIX = ".upload-"
_LINK_PREFIX = ".link-"
_TRASH_PREFIX = ".trash-"
_LOCK_NAME = ".lock"
_POINTERS = (CURRENT, PREVIOUS)
_LEFTOVER_PREFIXES = (UPLOAD_PREFIX, _LINK_PREFIX, _TRASH_PREFIX)


def upload_name(version: str) -> str:
    """A fresh temporary name for uploading ``version`` into a store."""
    if not is_safe_name(version):
        raise BundleError(f"version {version!r} may hold only letters, digits, '.', '-' and '_'")
    return f"{UPLOAD_PREFIX}{version}-{secrets.token_hex(4)}"


def is_upload_name(name: str) -> bool:
    return name.startswith(UPLOAD_PREFIX) and is_safe_name(name[len(UPLOAD_PREFIX) :])


def verify_bundle(path: Path, config: Any, *, expected_sha256: str | None = None) -> Bundle:
    """Every check a bin makes before a bundle may go live; raise BundleError with one line.

    The checksum (and the one the sender computed, when given), labels that fit this bin's
    config, and one inference with this bin's runtime (:func:`smartbin.device.model.load_classifier`).
    """
    bundle = load_bundle(path)
    if expected_sha256 and bundle.sha256 != expected_sha256.lower():
        raise BundleError(
            f"{path}: model sha256 {bundle.sha256[:12]}... is not the one sent "
            f"({expected_sha256[:12]}...); the copy is damaged, deploy again"
        )
    from .model import load_classifier

    return load_classifier(path, config).bundle


@dataclass(frozen=True)
class StoredVersion:
    version: str
    path: Path
    installed: float
    bundle: Bundle | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "version": self.version,
            "installed": self.installed,
            "ok": self.error is None,
            "error": self.error,
            "name": b.name if b else None,
            "sha256": b.sha256 if b else None,
            "labels": list(b.labels) if b else None,
            "quantization": b.quantization if b else None,
            "created": b.manifest.get("created") if b else None,
        }


@dataclass(frozen=True)
class Switch:
    """What an activate/rollback did."""

    action: str  # "activated", "already-current", "repaired", "rolled-back"
    current: str | None  # None: no deployed model is live, the daemon runs its bundled default
    previous: str | None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "current": self.current, "previous": self.previous}


class ModelStore:
    """One bin's ``models_dir``. Operations that change it hold an exclusive lock."""

    def __init__(self, models_dir: Path | str) -> None:
        self.dir = Path(models_dir)

    # -- reading ---------------------------------------------------------------------------

    def _pointer(self, name: str) -> str | None:
        link = self.dir / name
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        except OSError:
            raise SmartbinError(
                f"{link} is not a symlink; move it away so smartbin can manage the store"
            ) from None
        version = Path(target).name
        return version if is_safe_name(version) else None

    @property
    def current(self) -> str | None:
        return self._pointer(CURRENT)

    @property
    def previous(self) -> str | None:
        return self._pointer(PREVIOUS)

    def version_dirs(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(
            p
            for p in self.dir.iterdir()
            if p.name not in _POINTERS and is_safe_name(p.name) and p.is_dir() and not p.is_symlink()
        )

    def versions(self, *, verify: bool = True) -> list[StoredVersion]:
        """Every version directory, oldest install first, with its bundle or why it is unusable."""
        out = []
        for path in self.version_dirs():
            try:
                bundle, error = load_bundle(path, verify_checksum=verify), None
            except BundleError as exc:
                bundle, error = None, str(exc)
            out.append(StoredVersion(path.name, path, path.stat().st_mtime, bundle, error))
        return sorted(out, key=lambda v: (v.installed, v.version))

    def leftovers(self) -> list[Path]:
        """Remains of interrupted uploads and switches."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.name.startswith(_LEFTOVER_PREFIXES))

    def to_json(self) -> dict[str, Any]:
        return {
            "models_dir": str(self.dir.resolve()) if self.dir.exists() else str(self.dir),
            "current": self.current,
            "previous": self.previous,
            "versions": [v.to_json() for v in self.versions()],
            "leftovers": [p.name for p in self.leftovers()],
        }

    # -- changing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Read-only is enough for flock, so every member of the store's group can take the lock.
        fd = os.open(self.dir / _LOCK_NAME, os.O_RDONLY | os.O_CREAT, 0o664)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SmartbinError(
                    f"another smartbin is changing the model store {self.dir}; try again when it is done"
                ) from None
            yield
        finally:
            os.close(fd)

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _point(self, name: str, version: str) -> None:
        tmp = self.dir / f"{_LINK_PREFIX}{name}-{secrets.token_hex(4)}"
        os.symlink(version, tmp)
        try:
            os.replace(tmp, self.dir / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SmartbinError(
                f"cannot switch {self.dir / name} ({exc.strerror}); check the store"
            ) from None

    def _switch(self, version: str, action: str) -> Switch:
        old = self.current
        if old == version:
            return Switch("already-current", version, self.previous)
        if old is not None:
            self._point(PREVIOUS, old)
        self._point(CURRENT, version)
        self._fsync_dir()
        return Switch(action, version, old if old is not None else self.previous)

    @staticmethod
    def _fsync_files(path: Path) -> None:
        """Flush an upload's files to the SD card before ``current`` may point at them."""
        for file in path.iterdir():
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def _remove(self, path: Path) -> None:
        """Delete a directory by first renaming it to a leftover name (a crash leaves only a leftover)."""
        trash = self.dir / f"{_TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def install_upload(self, name: str, config: Any, *, expected_sha256: str | None = None) -> Switch:
        """Check an uploaded bundle ``<models_dir>/<name>``, file it under its version, make it live."""
        if not is_upload_name(name):
            raise SmartbinError(f"{name!r} is not an upload name ({UPLOAD_PREFIX}<version>-<token>)")
        upload = self.dir / name
        if not upload.is_dir():
            raise BundleError(f"{upload}: no such upload; the transfer did not finish, deploy again")
        with self.locked():
            try:
                bundle = verify_bundle(upload, config, expected_sha256=expected_sha256)
            except SmartbinError:
                self._remove(upload)
                raise
            self._fsync_files(upload)
            version = bundle.version
            if version in _POINTERS:
                self._remove(upload)
                raise BundleError(f"version {version!r} is reserved in the model store; rename the bundle")
            target = self.dir / version
            if target.exists():
                try:
                    existing = load_bundle(target)
                except BundleError:
                    existing = None
                if existing is not None and existing.sha256 != bundle.sha256:
                    self._remove(upload)
                    raise BundleError(
                        f"version {version} is already on this bin with a different model; "
                        "give the new bundle its own version"
                    )
                if existing is None:  # a damaged copy: replace it
                    self._remove(target)
                    os.rename(upload, target)
                    if self.current == version:
                        return Switch("repaired", version, self.previous)
                else:
                    self._remove(upload)
            else:
                os.rename(upload, target)
            return self._switch(version, "activated")

    def activate(self, version: str, config: Any) -> Switch:
        """Make a version already in the store live, after checking it again."""
        if not is_safe_name(version) or version in _POINTERS:
            raise SmartbinError(f"{version!r} is not a version name")
        path = self.dir / version
        if not path.is_dir():
            raise BundleError(f"version {version} is not in {self.dir}; see 'smartbin store list'")
        with self.locked():
            verify_bundle(path, config)
            return self._switch(version, "activated")

    def rollback(self, config: Any) -> Switch:
        """Make ``previous`` live again; ``previous`` then points at what was live (so twice is a no-op).

        Before the first deployed model there is only the bundled default: rolling back the first
        deploy removes ``current``, and the daemon falls back to that default on its next reload.
        """
        with self.locked():
            current, target = self.current, self.previous
            if target is None:
                if current is None:
                    raise BundleError(f"no model was deployed to {self.dir}; nothing to roll back")
                self._point(PREVIOUS, current)
                (self.dir / CURRENT).unlink()
                self._fsync_dir()
                return Switch("rolled-back", None, current)
            if not (self.dir / target).is_dir():
                raise BundleError(
                    f"the previous model {target} is gone from {self.dir}; nothing to roll back to"
                )
            if target == current:
                raise BundleError(f"previous and current are both {target}; nothing to roll back to")
            verify_bundle(self.dir / target, config)
            return self._switch(target, "rolled-back")

    def clean(self, keep: int | None = None) -> list[str]:
        """Remove leftovers; with ``keep``, also all but the ``keep`` newest versions besides current and previous."""
        removed = []
        with self.locked():
            for path in self.leftovers():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path.name)
            if keep is not None:
                live = {self.current, self.previous}
                old = [v for v in self.versions(verify=False) if v.version not in live]
                for stale in old[: max(0, len(old) - keep)]:
                    self._remove(stale.path)
                    removed.append(stale.version)
        return removed
