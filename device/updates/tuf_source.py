"""The update source a bin pulls from: a TUF repository made by ``smartbin fleet init``.

python-tuf's ngclient verifies the metadata (signatures and thresholds from the trusted root,
expiry, no version older than one this bin already saw, lengths and hashes); this module reads
the channel's signed pointer, decides whether this bin is in the rollout, and downloads the
bundle's archive itself so that a cut download resumes and the rate stays bounded, checking it
against the signed length and hash before a byte of it is unpacked. It never installs anything:
``fetch`` returns a bundle directory, and the daemon installs it through the model store.

Files under ``<state_dir>/updates/``::

    metadata/      ngclient's trusted metadata (root history, timestamp, snapshot, targets) and
                   anchor.sha256: which [updates] root it grew from (another root: start again)
    channels/      the channel pointers, as verified
    downloads/     <sha256>.part: an archive being downloaded (resumed from where it stopped)
    bundles/       <version>/: the last bundle fetched, unpacked

tuf and urllib3 are imported only when a source is used, so ``smartbin`` starts as fast without.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BundleError
from ..vision.bundle import is_safe_name, load_bundle
from ..vision.store import receive_tar
from .settings import UpdatesConfig
from .source import Offer, UpdateError

CHUNK = 64 * 1024
SOCKET_TIMEOUT_S = 30.0


def rollout_bucket(bin_id: str, channel: str) -> int:
    """This bin's place, 0-99, in a channel's staged rollout: a bundle offered to P percent reaches
    the bins whose bucket is below P, the same bins every time (a larger P adds bins, never swaps)."""
    digest = hashlib.sha256(f"{channel}\0{bin_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _cause(exc: BaseException) -> str:
    """The innermost reason of a download error, in a few words."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            exc = reason
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    return text.split(": ", 1)[-1][:200] if len(text) > 200 else text


@contextmanager
def _verifying(what: str) -> Iterator[None]:
    """tuf's errors as UpdateError: what failed verification is refused, the rest is passing."""
    from tuf.api import exceptions as tuf_errors

    try:
        yield
    except UpdateError:
        raise
    except tuf_errors.ExpiredMetadataError as exc:
        raise UpdateError(
            f"{what}: refused expired metadata ({exc}); the repository needs 'smartbin fleet refresh'",
            refused=True,
        ) from None
    except tuf_errors.BadVersionNumberError as exc:
        raise UpdateError(
            f"{what}: refused metadata older than this bin already saw, a replay or rollback ({exc})",
            refused=True,
        ) from None
    except tuf_errors.UnsignedMetadataError as exc:
        raise UpdateError(
            f"{what}: refused metadata not signed by the repository's keys ({exc})", refused=True
        ) from None
    except tuf_errors.LengthOrHashMismatchError as exc:
        raise UpdateError(
            f"{what}: refused a file that does not match its signed length and hash ({exc})", refused=True
        ) from None
    except tuf_errors.RepositoryError as exc:  # malformed metadata, a bad root chain, ...
        raise UpdateError(
            f"{what}: refused metadata that failed verification ({type(exc).__name__}: {exc})", refused=True
        ) from None
    except tuf_errors.DownloadLengthMismatchError as exc:
        raise UpdateError(f"{what}: refused a file longer than it may be ({exc})", refused=True) from None
    except tuf_errors.DownloadHTTPError as exc:
        raise UpdateError(f"{what}: the server answered HTTP {exc.status_code}") from None
    except tuf_errors.DownloadError as exc:
        raise UpdateError(f"{what}: {_cause(exc)}") from None
    except OSError as exc:
        raise UpdateError(f"{what}: {exc.filename or ''} {exc.strerror or exc}".strip()) from None


class TufSource:
    """An :class:`~.source.UpdateSource` on a TUF repository (``[updates] url`` and ``root``)."""

    def __init__(
        self,
        settings: UpdatesConfig,
        bin_id: str,
        state_dir: Path,
        *,
        stop: threading.Event | None = None,
        socket_timeout: float = SOCKET_TIMEOUT_S,
    ) -> None:
        if not settings.url or settings.root is None:
            raise ValueError("a TufSource needs [updates] url and root")
        self.settings = settings
        self.bin_id = bin_id
        self.dir = Path(state_dir) / "updates"
        self.stop = stop or threading.Event()
        self.socket_timeout = socket_timeout
        self.base_url = settings.url.rstrip("/")

    # --- metadata ---

    @property
    def _metadata(self) -> Path:
        return self.dir / "metadata"

    def _updater(self) -> Any:
        """A fresh ngclient Updater (each may refresh once), trusting what this bin trusted last."""
        from tuf.api.exceptions import RepositoryError
        from tuf.ngclient import Updater, UpdaterConfig, Urllib3Fetcher

        root_file = Path(self.settings.root)  # type: ignore[arg-type]
        try:
            anchor = root_file.read_bytes()
        except OSError as exc:
            raise UpdateError(
                f"[updates] root {root_file}: {exc.strerror}; copy the repository's root.json there"
            ) from None
        anchor_sha = hashlib.sha256(anchor).hexdigest()
        marker = self._metadata / "anchor.sha256"

        def make(bootstrap: bytes | None) -> Any:
            return Updater(
                str(self._metadata),
                f"{self.base_url}/metadata/",
                str(self.dir / "channels"),
                f"{self.base_url}/targets/",
                fetcher=Urllib3Fetcher(socket_timeout=int(self.socket_timeout), app_user_agent="smartbin"),
                config=UpdaterConfig(app_user_agent="smartbin"),
                bootstrap=bootstrap,
            )

        known = marker.is_file() and marker.read_text().strip() == anchor_sha
        if known and (self._metadata / "root.json").exists():
            try:
                return make(None)  # the newest root this bin verified, and its rollback floor
            except (OSError, RepositoryError):
                pass  # a damaged cache: start again from the configured root
        shutil.rmtree(self._metadata, ignore_errors=True)
        self._metadata.mkdir(parents=True)
        try:
            updater = make(anchor)
        except (RepositoryError, ValueError) as exc:
            raise UpdateError(f"[updates] root {root_file}: not a TUF root.json ({exc})") from None
        marker.write_text(anchor_sha + "\n")
        return updater

    def offer(self) -> Offer | None:
        channel = self.settings.channel
        what = f"checking channel {channel} at {self.base_url}"
        with _verifying(what):
            updater = self._updater()
            updater.refresh()
            pointer_info = updater.get_targetinfo(f"channels/{channel}.json")
            if pointer_info is None:
                return None
            (self.dir / "channels").mkdir(parents=True, exist_ok=True)
            path = updater.download_target(pointer_info, str(self.dir / "channels" / f"{channel}.json"))
            pointer = _pointer(Path(path).read_bytes(), what)
            if rollout_bucket(self.bin_id, channel) >= pointer["percent"]:
                return None
            archive = updater.get_targetinfo(pointer["target"])
        if archive is None or "sha256" not in archive.hashes:
            raise UpdateError(
                f"{what}: refused a channel that points at {pointer['target']}, which the signed targets do not list with a sha256",
                refused=True,
            )
        return Offer(channel, pointer["version"], archive.path, archive.length, archive.hashes["sha256"])

    # --- the bundle ---

    def fetch(self, offer: Offer) -> Path:
        what = f"fetching {offer.version} from {self.base_url}"
        with _verifying(what):
            updater = self._updater()
            updater.refresh()
            info = updater.get_targetinfo(offer.target)
            consistent = _root(self._metadata).consistent_snapshot
        if info is None or info.length != offer.length or info.hashes.get("sha256") != offer.sha256:
            raise UpdateError(
                f"{what}: the channel changed since it offered {offer.version}; the next check sees what it offers now"
            )
        downloads = self.dir / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        part = downloads / f"{offer.sha256}.part"
        for other in downloads.iterdir():  # partial downloads of other archives are no use now
            if other != part:
                other.unlink(missing_ok=True)
        directory, sep, name = info.path.rpartition("/")
        url = f"{self.base_url}/targets/{directory}{sep}{offer.sha256 + '.' if consistent else ''}{name}"
        self._download(url, part, info.length, what)
        with _verifying(what), open(part, "rb") as f:
            try:
                info.verify_length_and_hashes(f)
            except Exception:
                part.unlink(missing_ok=True)  # the next try starts again from the first byte
                raise
        bundle = self._unpack(part, offer, what)
        part.unlink(missing_ok=True)
        return bundle

    def _download(self, url: str, part: Path, length: int, what: str) -> None:
        """GET ``url`` into ``part``, from where an earlier try stopped (Range), at most
        max_rate_kb_s, never past ``length`` (the signed length)."""
        import urllib3

        have = part.stat().st_size if part.exists() else 0
        if have > length:
            part.unlink()
            have = 0
        if have == length:
            return
        http = _pool_for(url)
        timeout = urllib3.Timeout(connect=self.socket_timeout, read=self.socket_timeout)
        try:
            response = http.request(
                "GET",
                url,
                headers={"Range": f"bytes={have}-"} if have else {},
                preload_content=False,
                timeout=timeout,
                retries=urllib3.Retry(total=1, redirect=3, raise_on_status=False),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise UpdateError(f"{what}: {_cause(exc) if exc.__cause__ or exc.__context__ else exc}") from None
        try:
            if response.status == 206 and response.headers.get("Content-Range", "").startswith(
                f"bytes {have}-"
            ):
                mode = "ab"
            elif response.status == 200:
                have, mode = 0, "wb"  # the server ignored the range: from the start
            elif response.status == 416:  # the server's file ends before the signed length
                part.unlink(missing_ok=True)
                raise UpdateError(
                    f"{what}: refused {url}: shorter than its signed length {length}", refused=True
                )
            else:
                raise UpdateError(f"{what}: {url}: the server answered HTTP {response.status}")
            rate = self.settings.max_rate_kb_s * 1024
            chunk = min(CHUNK, max(1024, rate // 8)) if rate else CHUNK
            start, sent = time.monotonic(), 0
            with open(part, mode) as out:
                for data in response.stream(chunk):
                    if have + len(data) > length:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise UpdateError(
                            f"{what}: refused {url}: longer than its signed length {length}", refused=True
                        )
                    out.write(data)
                    have += len(data)
                    sent += len(data)
                    if self.stop.is_set():
                        raise UpdateError(
                            f"{what}: stopped at {have} of {length} bytes; the next check resumes"
                        )
                    if rate:
                        ahead = sent / rate - (time.monotonic() - start)
                        if ahead > 0 and self.stop.wait(ahead):
                            raise UpdateError(
                                f"{what}: stopped at {have} of {length} bytes; the next check resumes"
                            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UpdateError(
                f"{what}: the download stopped at {have} of {length} bytes ({_cause(exc) or exc}); the next check resumes"
            ) from None
        finally:
            response.release_conn()
        if have < length:
            raise UpdateError(
                f"{what}: the download stopped at {have} of {length} bytes; the next check resumes"
            )

    def _unpack(self, archive: Path, offer: Offer, what: str) -> Path:
        """The archive's bundle files into bundles/<version>/ (store.receive_tar: only the bundle's
        own regular files, by name, never a path), checked as a bundle."""
        bundles = self.dir / "bundles"
        bundles.mkdir(parents=True, exist_ok=True)
        for old in bundles.iterdir():  # what an earlier fetch left: installed since, or never will be
            shutil.rmtree(old, ignore_errors=True)
        work = Path(tempfile.mkdtemp(dir=bundles, prefix=".unpack-"))
        try:
            with open(archive, "rb") as f:
                receive_tar(f, work)
            bundle = load_bundle(work)
            if bundle.version != offer.version or not is_safe_name(bundle.version):
                raise BundleError(f"it holds version {bundle.version}, the channel offered {offer.version}")
        except BundleError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise UpdateError(f"{what}: refused the archive {offer.target}: {exc}", refused=True) from None
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise UpdateError(f"{what}: cannot unpack into {bundles}: {exc.strerror or exc}") from None
        final = bundles / bundle.version
        os.rename(work, final)
        return final


def _pool_for(url: str) -> Any:
    """A urllib3 pool for ``url`` through the proxy the environment names (``http_proxy``,
    ``https_proxy``, ``all_proxy``, ``no_proxy``), as ngclient fetches the metadata: a bin that
    reaches the repository only through a proxy gets its bundles the same way."""
    from urllib.request import getproxies, proxy_bypass

    import urllib3

    headers = {"User-Agent": "smartbin"}
    parsed = urllib3.util.parse_url(url)
    proxies = getproxies()
    proxy = proxies.get(parsed.scheme or "http") or proxies.get("all")
    if proxy and not proxy_bypass(parsed.host or ""):
        return urllib3.ProxyManager(proxy, headers=headers)
    return urllib3.PoolManager(headers=headers)


def _root(metadata_dir: Path) -> Any:
    """The root this bin trusts now (ngclient keeps the newest it verified as root.json)."""
    from tuf.api.metadata import Metadata

    return Metadata.from_file(str(metadata_dir / "root.json")).signed


def _pointer(data: bytes, what: str) -> dict[str, Any]:
    """The channel's pointer {"version", "target", "percent"}, or refused."""
    try:
        pointer = json.loads(data)
        version, target, percent = pointer["version"], pointer["target"], pointer["percent"]
        if not (
            isinstance(version, str)
            and isinstance(target, str)
            and isinstance(percent, int)
            and not isinstance(percent, bool)
            and 0 <= percent <= 100
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise UpdateError(
            f"{what}: refused a channel pointer that is not {{version, target, percent 0-100}}", refused=True
        ) from None
    return {"version": version, "target": target, "percent": percent}
