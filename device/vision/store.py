"""The model store on a bin: bundles side by side, two symlinks say which is live and which was.

Layout of ``<models_dir>``::

    <version>/          one bundle per version (manifest.json, model.tflite, labels.txt)
    current  -> <version>   the live model (the daemon loads it; re-read on reload)
    previous -> <version>   what was live before the last switch, for rollback
    .switch             a switch in progress: the pointers it sets (replayed after a crash)
    .upload-<token>/    a bundle being received; only while its receiver holds the lock
    .lock               flock: one change at a time

A missing ``current`` means the bundled default model; a missing ``previous`` means "roll back to
the bundled default" when ``current`` is set, and "nothing to roll back" when it is not. The
invariants each operation keeps are written down in docs/deploy.md ("The store's invariants").

A switch sets both pointers as one step: the new pair goes to ``.switch`` first (written and
renamed atomically), then each symlink is replaced atomically (a new symlink renamed over the
old one), then ``.switch`` is removed. Every change takes the lock and first finishes a switch a
crash interrupted, so after any crash the pair is either the old one or the new one. A bundle
becomes a version directory only after it passed every check (checksum, labels fit this bin's
config, one inference with this bin's runtime), and its files are fsynced first (bins lose power).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import BundleError, SmartbinError
from .bundle import LABELS_NAME, MANIFEST_NAME, Bundle, is_safe_name, load_bundle

CURRENT = "current"
PREVIOUS = "previous"
UPLOAD_PREFIX = ".upload-"
_JOURNAL = ".switch"
_LINK_PREFIX = ".link-"
_TRASH_PREFIX = ".trash-"
_LOCK_NAME = ".lock"
_POINTERS = (CURRENT, PREVIOUS)
_LEFTOVER_PREFIXES = (UPLOAD_PREFIX, _LINK_PREFIX, _TRASH_PREFIX)


def bundle_files(bundle: Bundle) -> list[Path]:
    """The files that make a bundle (manifest first); anything else in its folder is not sent."""
    files = [bundle.path / MANIFEST_NAME, bundle.model_path]
    if (bundle.path / LABELS_NAME).is_file():
        files.append(bundle.path / LABELS_NAME)
    return files


def bundle_tar(bundle: Bundle) -> bytes:
    """The bundle's own files as an uncompressed tar, manifest first (what ``store install -`` reads)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in bundle_files(bundle):
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return out.getvalue()


def verify_bundle(path: Path, config: Any, *, expected_sha256: str | None = None) -> Bundle:
    """Every check a bin makes before a bundle may go live; raise BundleError with one line.

    The checksum (and the one the sender computed, when given), labels that fit this bin's
    config, and one inference with this bin's runtime (:func:`smartbin.device.vision.model.load_classifier`).
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
    """What an install/activate/rollback/reject did; ``None``: the bundled default model."""

    action: str  # "activated", "already-current", "repaired", "rolled-back", "rejected"
    current: str | None
    previous: str | None
    replaced: str | None = None  # what ``previous`` was before (``reject`` puts it back)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "current": self.current,
            "previous": self.previous,
            "replaced": self.replaced,
        }


def _lock_holder(fd: int) -> str:
    """`` (pid N)`` of the process holding the flock on ``fd`` (from /proc/locks), or ``""``."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == key:
            return f" (pid {fields[4]})"
    return ""


class ModelStore:
    """One bin's ``models_dir``. Operations that change it hold an exclusive lock."""

    def __init__(self, models_dir: Path | str) -> None:
        self.dir = Path(models_dir)

    # -- reading ---------------------------------------------------------------------------

    def _pointer(self, name: str) -> str | None:
        """The version a pointer names (whether or not that version is still there)."""
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
        return version if is_safe_name(version) and version not in _POINTERS else None

    def _existing(self, version: str | None) -> str | None:
        return version if version is not None and self._is_version(version) else None

    def _is_version(self, version: str) -> bool:
        path = self.dir / version
        return is_safe_name(version) and version not in _POINTERS and path.is_dir() and not path.is_symlink()

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
            "interrupted_switch": (self.dir / _JOURNAL).exists(),
        }

    # -- the lock and the switch -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock; first finish a switch that a crash interrupted."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # Read-only is enough for flock, so every member of the store's group can take the lock.
        fd = os.open(self.dir / _LOCK_NAME, os.O_RDONLY | os.O_CREAT, 0o664)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SmartbinError(
                    f"another smartbin{_lock_holder(fd)} is changing the model store {self.dir} "
                    "(a deploy?); try again when it is done"
                ) from None
            self._recover()
            yield
        finally:
            os.close(fd)

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _point(self, name: str, version: str | None) -> None:
        """Make one pointer name ``version`` (``None``: remove it), atomically."""
        link = self.dir / name
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            return
        with contextlib.suppress(OSError):
            if os.readlink(link) == version:
                return
        tmp = self.dir / f"{_LINK_PREFIX}{name}-{secrets.token_hex(4)}"
        os.symlink(version, tmp)
        try:
            os.replace(tmp, link)
        except OSError as exc:
            os.unlink(tmp)
            raise SmartbinError(f"cannot switch {link} ({exc.strerror}); check the store") from None

    def _set_pointers(self, current: str | None, previous: str | None) -> None:
        """Switch both pointers as one step (see the module docstring)."""
        tmp = self.dir / f"{_LINK_PREFIX}switch-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
        try:
            os.write(fd, json.dumps({CURRENT: current, PREVIOUS: previous}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / _JOURNAL)
        self._fsync_dir()
        self._apply(current, previous)

    def _apply(self, current: str | None, previous: str | None) -> None:
        self._point(PREVIOUS, previous)
        self._point(CURRENT, current)
        self._fsync_dir()
        os.unlink(self.dir / _JOURNAL)
        self._fsync_dir()

    def _recover(self) -> None:
        """Finish an interrupted switch; a ``previous`` equal to ``current`` is dropped."""
        journal = self.dir / _JOURNAL
        try:
            pair = json.loads(journal.read_text())
            current, previous = pair[CURRENT], pair[PREVIOUS]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError):
            os.unlink(journal)  # written atomically, so never half: not ours
        else:
            if all(v is None or (isinstance(v, str) and self._is_version(v)) for v in (current, previous)):
                self._apply(current, previous)
            else:
                os.unlink(journal)
        if self.previous is not None and self.previous == self.current:
            self._point(PREVIOUS, None)
            self._fsync_dir()

    # -- changing --------------------------------------------------------------------------

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

    def _activate(self, version: str) -> Switch:
        """``current`` -> ``version``, ``previous`` -> what was live (the bundled default: none)."""
        current, previous = self._existing(self.current), self.previous
        if current == version:
            return Switch("already-current", version, previous)
        self._set_pointers(version, current)
        return Switch("activated", version, current, replaced=previous)

    def install(self, source: Path | IO[bytes], config: Any, *, expected_sha256: str | None = None) -> Switch:
        """Copy a bundle's own files into the store, check them, file them under their version, make it live.

        ``source``: a bundle directory, or a binary stream of :func:`bundle_tar`. The lock is held
        from the first byte received, so no clean-up can remove an upload in flight.
        """
        with self.locked():
            upload = self.dir / f"{UPLOAD_PREFIX}{secrets.token_hex(4)}"
            upload.mkdir()
            try:
                if isinstance(source, Path):
                    _copy_bundle(source, upload)
                else:
                    receive_tar(source, upload)
                bundle = verify_bundle(upload, config, expected_sha256=expected_sha256)
                self._fsync_files(upload)
            except (SmartbinError, OSError):
                self._remove(upload)
                raise
            return self._file_and_activate(upload, bundle)

    def _file_and_activate(self, upload: Path, bundle: Bundle) -> Switch:
        version = bundle.version
        if version in _POINTERS:
            self._remove(upload)
            raise BundleError(f"version {version!r} is reserved in the model store; rename the bundle")
        target = self.dir / version
        if not target.exists():
            os.rename(upload, target)
            return self._activate(version)
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
            self._fsync_dir()
            if self.current == version:
                return Switch("repaired", version, self.previous)
        else:
            self._remove(upload)
        return self._activate(version)

    def activate(self, version: str, config: Any) -> Switch:
        """Make a version already in the store live, after checking it again."""
        if not is_safe_name(version) or version in _POINTERS:
            raise SmartbinError(f"{version!r} is not a version name")
        if not self._is_version(version):
            raise BundleError(f"version {version} is not in {self.dir}; see 'smartbin store list'")
        with self.locked():
            verify_bundle(self.dir / version, config)
            return self._activate(version)

    def rollback(self, config: Any) -> Switch:
        """Swap ``current`` and ``previous`` (a missing one is the bundled default): twice is a no-op.

        A ``current`` whose version is gone (a dangling link) is dropped, not kept as ``previous``.
        """
        with self.locked():
            named, target = self.current, self.previous
            current = self._existing(named)
            if target is None:
                if named is None:
                    raise BundleError(f"no model was deployed to {self.dir}; nothing to roll back")
                self._set_pointers(None, current)
                return Switch("rolled-back", None, current, replaced=None)
            if not self._is_version(target):
                raise BundleError(
                    f"the previous model {target} is gone from {self.dir}; nothing to roll back to"
                )
            verify_bundle(self.dir / target, config)
            self._set_pointers(target, current)
            return Switch("rolled-back", target, current, replaced=target)

    def reject(self, version: str, previous: str | None) -> Switch:
        """``version`` failed its health check: put back the pointers as they were before it went live.

        ``previous`` is what ``previous`` was then (the ``replaced`` of the switch that made
        ``version`` live). Refused when ``version`` is no longer live: another change came in
        between, and rolling that back is not this deploy's call.
        """
        with self.locked():
            live = self.current
            if live != version:
                raise SmartbinError(
                    f"{version} is no longer live in {self.dir} (live: {live or 'the bundled default'}); "
                    "another deploy changed the store, so nothing was rolled back: see 'smartbin store list'"
                )
            back = self._existing(self.previous)
            if previous in (version, back) or (previous is not None and not self._is_version(previous)):
                previous = None
            self._set_pointers(back, previous)
            return Switch("rejected", back, previous, replaced=version)

    def clean(self, keep: int | None = None) -> list[str]:
        """Remove leftovers; with ``keep``, also all but the ``keep`` newest versions besides current and previous.

        Under the lock every leftover is stale: a receiver holds the lock until its upload is filed.
        """
        removed = []
        with self.locked():
            for path in self.leftovers():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                removed.append(path.name)
            if keep is not None:
                live = {self.current, self.previous}
                old = [v for v in self.versions(verify=False) if v.version not in live]
                for stale in old[: max(0, len(old) - keep)]:
                    self._remove(stale.path)
                    removed.append(stale.version)
        return removed


def _copy_bundle(source: Path, upload: Path) -> None:
    """Copy only the bundle's own files (a bundle folder may carry other, large files)."""
    for path in bundle_files(load_bundle(source, verify_checksum=False)):
        shutil.copyfile(path, upload / path.name)


def receive_tar(stream: IO[bytes], upload: Path) -> None:
    """Write a :func:`bundle_tar` stream into ``upload``: the manifest first, then only the files it names."""
    allowed = {MANIFEST_NAME}
    tracked = _Tracked(stream)
    try:
        with tarfile.open(fileobj=tracked, mode="r|") as tar:
            for member in tar:
                if not member.isreg() or member.name not in allowed:
                    raise BundleError(
                        f"the upload holds {member.name!r}, which is not a file of the bundle "
                        f"({', '.join(sorted(allowed))}); send it with 'smartbin deploy'"
                    )
                allowed.discard(member.name)
                data = tar.extractfile(member)
                assert data is not None  # a regular file
                with open(upload / member.name, "xb") as out:
                    shutil.copyfileobj(data, out)
                if member.name == MANIFEST_NAME:
                    allowed |= _named_files(upload / MANIFEST_NAME)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"the upload stopped before its end ({exc}); deploy again") from None
    if tracked.dry:  # tarfile takes a stream cut at a block boundary for a finished archive
        raise BundleError("the upload stopped before its end (no end-of-archive marker); deploy again")


class _Tracked:
    """A stream that remembers whether it ran dry before the reader was done with it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.dry = raw, False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.dry |= not data
        return data


def _named_files(manifest: Path) -> set[str]:
    try:
        model_file = json.loads(manifest.read_text(encoding="utf-8")).get("model_file")
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise BundleError("the upload's manifest.json is not a JSON object; rebuild the bundle") from None
    names = {LABELS_NAME}
    if isinstance(model_file, str) and is_safe_name(model_file) and model_file != MANIFEST_NAME:
        names.add(model_file)
    return names
