"""What only the file system can tell about a config, for ``smartbin config check``: folders that
cannot be made or written, an event log that is a folder, a camera source or MQTT file that is
not there, a path another bin's config also uses; a review page that will show no photos or take
no relabels; and updates that cannot be checked or would never go live."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, SmartbinError, os_error_reason
from ..hardware.cameras import check_source
from ..home.settings import check_mqtt_files
from ..home.web.token import read_token, token_path
from ..records.lock import other_bin_on, shared_paths


def _nearest(path: Path) -> tuple[Path, bool | None]:
    """The nearest existing path at or above ``path``, and whether it is a folder (None: unknown)."""
    for candidate in (path, *path.parents):
        try:
            mode = candidate.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return candidate, None
        return candidate, stat.S_ISDIR(mode)
    return path, None


def _unwritable(folder: Path) -> str | None:
    """Why this user cannot add files to ``folder``, or None when it can."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY else "permission denied"
    try:  # os.access lets root past everything; /sys and /proc still take no new folder
        os.rmdir(tempfile.mkdtemp(prefix=".smartbin-check-", dir=folder))
    except OSError as exc:
        return os_error_reason(exc)
    return None


def check_paths(config: Config) -> list[str]:
    """Check what only the file system can tell, for ``smartbin config check``.

    Raises :class:`ConfigError` for a path that cannot work whoever runs the bin: a file where
    a folder must be (or above it), a folder where the event log must be, a folder camera
    without photos, a video file that is not there. Returns warnings for folders this user
    cannot create or write (the daemon may run as another user; one that cannot write there
    sorts without records), and for an event log or photo folder that a bin with another state
    directory used last (running or not). A camera device that is absent (no /dev/video0) is
    hardware, not config: a warning.
    """
    where = config.source.name if config.source else "config"
    p = config.paths
    folders = [
        ("paths.state_dir", p.state_dir, True),
        ("paths.models_dir", p.models_dir, False),  # written by 'smartbin deploy', read by the bin
        ("paths.events_db", p.events_db.parent, True),
    ]
    if config.images.save:
        folders.append(("paths.images_dir", p.images_dir, True))
    warnings = []
    for key, folder, written in folders:
        found, is_dir = _nearest(folder)
        if is_dir is False:
            problem = (
                f"{folder} is a file, not a folder"
                if found == folder
                else f"cannot create {folder}: {found} is a file"
            )
            raise ConfigError(f"{where}: {key}: {problem}; choose another path")
        reason = None if is_dir is None or not written else _unwritable(found)
        if is_dir is None or reason:
            warnings.append(
                f"{where}: {key}: this user (uid {os.getuid()}) cannot "
                f"{'look into' if is_dir is None else 'write in' if found == folder else 'create'} "
                f"{folder} ({reason or f'{found} cannot be read'}); "
                "a daemon that cannot write there sorts without records"
            )
    if p.events_db.is_dir():
        raise ConfigError(
            f"{where}: paths.events_db: {p.events_db} is a folder; give the event log's file, "
            f"e.g. {p.events_db / 'events.db'}"
        )
    for key, path in shared_paths(p, config.images).items():
        other = other_bin_on(path, p.state_dir)
        if other:
            warnings.append(
                f"{where}: {key}: {path} is also used by {other}; two bins on one {key} mix their "
                f"records, so give each bin its own {key}"
            )
    warnings += check_source(config.camera, where)
    if config.mqtt.host:
        check_mqtt_files(config.mqtt, where)
    return warnings


def check_web(config: Config) -> list[str]:
    """Warnings for a review page (``web.listen`` set) that will show no photos (``images.save``
    off) or accept no relabels (no token file it can use yet: which command makes one)."""
    if not config.web.listen:
        return []
    where = config.source.name if config.source else "config"
    warnings = []
    if not config.images.save:
        warnings.append(
            f"{where}: web.listen is set but images.save is false: the review page will show no photos; "
            "set save = true in [images]"
        )
    path = token_path(config)
    if not path.exists() and not path.is_symlink():
        with_config = f" --config {config.source}" if config.source else ""
        warnings.append(
            f"{where}: web.listen is set but there is no token file {path} yet: the review page will accept "
            f"no relabels; 'smartbin web token{with_config}' makes one (run it as the daemon's user)"
        )
    else:
        try:
            read_token(path)
        except SmartbinError as exc:
            warnings.append(f"{where}: web.token_file: the review page will accept no relabels: {exc}")
    return warnings


def check_updates(config: Config) -> list[str]:
    """With ``[updates] url``: :class:`ConfigError` for a ``root`` that is not there or is not a TUF
    root (the bin could never check), and a warning when ``classifier.model`` pins the bin (updates
    would be fetched but never go live)."""
    updates = config.updates
    if not updates.url:
        return []
    where = config.source.name if config.source else "config"
    remedy = "copy the fleet repository's metadata/root.json there (smartbin fleet init wrote it)"
    try:
        root = json.loads(updates.root.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"{where}: updates.root: {updates.root}: {os_error_reason(exc)}; {remedy}"
        ) from None
    except ValueError:
        root = None
    if (
        not isinstance(root, dict)
        or not isinstance(root.get("signed"), dict)
        or root["signed"].get("_type") != "root"
    ):
        raise ConfigError(f"{where}: updates.root: {updates.root} is not a TUF root.json; {remedy}")
    if config.classifier.model is not None:
        return [
            f"{where}: classifier.model pins the bin to {config.classifier.model}, so the updates it fetches "
            "never go live; remove it to run the model store's current model"
        ]
    return []
