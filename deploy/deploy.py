"""Put a model bundle on bins: upload, verify and switch on the bin, reload, health check, roll back.

Per host::

    smartbin store clean      remove leftovers of interrupted uploads; list the store
    scp -r BUNDLE  <models_dir>/.upload-<version>-<token>     (current is not touched)
    smartbin store activate --upload ... --sha256 ... --keep N
                              checksum, labels fit, one inference, switch; prune old versions
    <reload command>          the daemon re-reads <models_dir>/current
    smartbin status --json    until it reports the new version (--health-timeout)
    on any failure after the switch: smartbin store rollback, reload again, and say so
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smartbin.device.bundle import Bundle
from smartbin.device.errors import SmartbinError
from smartbin.device.store import upload_name

from .fleet import Outcome
from .ssh import Connection, RemoteError

DEFAULT_RELOAD = ("systemctl", "reload", "smartbin")
# Paths the bin reports are used in scp targets: keep them plain.
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")


@dataclass(frozen=True)
class RemoteSide:
    """How to run smartbin on the bins, and what to do after a switch."""

    smartbin: str = "smartbin"
    config: str | None = None
    models_dir: str | None = None
    reload: tuple[str, ...] = DEFAULT_RELOAD
    health_timeout: float = 30.0
    keep: int = 2

    def store(self, action: str, *args: str) -> list[str]:
        argv = [self.smartbin, "store", action, "--json"]
        if self.config:
            argv += ["--config", self.config]
        if self.models_dir:
            argv += ["--models-dir", self.models_dir]
        return [*argv, *args]

    def status(self) -> list[str]:
        argv = [self.smartbin, "status", "--json"]
        return [*argv, "--config", self.config] if self.config else argv


def remote_json(conn: Connection, argv: Sequence[str]) -> dict[str, Any]:
    out = conn.run(argv).stdout.decode("utf-8", "replace")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise RemoteError(
            f"'{_short(argv)}' on {conn.host} did not answer JSON; is smartbin there the same version?",
            "remote",
        ) from None
    if not isinstance(data, dict):
        raise RemoteError(f"'{_short(argv)}' on {conn.host} answered {type(data).__name__}", "remote")
    return data


def _short(argv: Sequence[str]) -> str:
    return " ".join(argv[:3])


def reload_and_check(conn: Connection, side: RemoteSide, expect: str | None, instead_of: str | None) -> str:
    """Reload the daemon and wait until it reports ``expect`` (or, with None, anything but ``instead_of``)."""
    if not side.reload:
        return "not reloaded (--reload-command is empty)"
    conn.run(side.reload)
    if side.health_timeout <= 0:
        return "reloaded, health check skipped"
    deadline = time.monotonic() + side.health_timeout
    seen = "no status"
    while True:
        result = conn.run(side.status(), check=False, timeout=max(5.0, side.health_timeout))
        if result.returncode == 0:
            try:
                version = json.loads(result.stdout).get("model_version")
            except (json.JSONDecodeError, AttributeError):
                version = None
            if version is not None and (version == expect if expect is not None else version != instead_of):
                return f"daemon runs {version}"
            seen = f"daemon still runs {version}"
        elif result.returncode == 255:
            raise RemoteError(f"lost the connection to {conn.host} during the health check", "unreachable")
        else:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            seen = (
                lines[-1].removeprefix("smartbin: error: ") if lines else f"status exit {result.returncode}"
            )
        if time.monotonic() >= deadline:
            raise RemoteError(f"health check failed after {side.health_timeout:g} s: {seen}", "remote")
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def check_plain_path(path: str, conn: Connection) -> str:
    """A path the bin reported, before it goes into an scp or rsync target."""
    if not _PLAIN_PATH.match(path) or ".." in path.split("/"):
        raise SmartbinError(
            f"{path!r} on {conn.host} is not a plain absolute path (letters, digits, ._/+-); use one"
        )
    return path


def deploy_one(
    conn: Connection, bundle: Bundle, side: RemoteSide, *, dry_run: bool = False
) -> tuple[str, str]:
    """The whole flow for one bin; returns ``(outcome, detail)`` or raises :class:`Outcome`."""
    version = bundle.version
    info = remote_json(conn, side.store("clean"))
    current = info.get("current")
    versions = {v["version"]: v for v in info.get("versions", [])}
    here = versions.get(version)
    if here and here.get("ok") and here.get("sha256") != bundle.sha256:
        raise Outcome(
            "refused",
            f"version {version} is already on the bin with a different model; give the bundle its own version",
        )
    if current == version and here and here.get("ok"):
        return "already current", f"{version} is already live; nothing to do"
    models_dir = check_plain_path(str(info["models_dir"]), conn)
    reuse = bool(here and here.get("ok"))
    if dry_run:
        steps = [
            f"activate the copy of {version} already on the bin"
            if reuse
            else f"upload {bundle.path} to {models_dir}, verify and activate {version}",
            f"(live now: {current or 'the bundled default'})",
        ]
        if side.reload:
            steps.append(f"then run '{' '.join(side.reload)}' and wait up to {side.health_timeout:g} s")
        return "would deploy", " ".join(steps)

    keep = ("--keep", str(side.keep))
    if reuse:
        switch = remote_json(conn, side.store("activate", version, *keep))
    else:
        name = upload_name(version)
        conn.upload_dir(bundle.path, f"{models_dir}/{name}")
        switch = remote_json(conn, side.store("activate", "--upload", name, "--sha256", bundle.sha256, *keep))
    if switch.get("action") == "already-current":
        return "already current", f"{version} is already live; nothing to do"
    before = switch.get("previous")

    try:
        health = reload_and_check(conn, side, version, None)
    except RemoteError as failure:
        raise Outcome("rolled back", f"{failure}; {_roll_back(conn, side, version)}") from None
    return "deployed", f"{version} is live, {health} (previous: {before or 'the bundled default'})"


def _roll_back(conn: Connection, side: RemoteSide, failed: str) -> str:
    """After a failed switch: back to what ran before, reload, and say what is live now."""
    try:
        switch = remote_json(conn, side.store("rollback"))
    except RemoteError as exc:
        raise Outcome("failed", f"rollback of {failed} failed too: {exc}; fix the bin by hand") from None
    live = switch.get("current") or "the bundled default model"
    if not side.reload:
        return f"back to {live}"
    try:
        conn.run(side.reload)
    except RemoteError as exc:
        return f"back to {live}, but the reload failed too: {exc}"
    return f"back to {live} (reloaded)"


def rollback_one(conn: Connection, side: RemoteSide) -> tuple[str, str]:
    """``smartbin deploy --rollback``: previous becomes current, reload, health check."""
    switch = remote_json(conn, side.store("rollback"))
    live, was = switch.get("current"), switch.get("previous")
    try:
        health = reload_and_check(conn, side, live, was)
    except RemoteError as failure:
        raise Outcome("failed", f"switched to {live or 'the bundled default'} but {failure}") from None
    return "rolled back", f"{live or 'the bundled default model'} is live, {health} (was {was})"


def list_one(conn: Connection, side: RemoteSide) -> dict[str, Any]:
    return remote_json(conn, side.store("list"))
