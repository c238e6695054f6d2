"""Put a model bundle on bins: upload, verify and switch on the bin, reload, health check, roll back.

Per host::

    smartbin store clean      remove leftovers of interrupted uploads; list the store
    smartbin store install - --sha256 ...   < a tar of the bundle's own files
                              under the store's lock: receive, checksum, labels fit, one
                              inference, switch
    <reload command>          the daemon re-reads <models_dir>/current
    smartbin status --json    until it reports the new version (--health-timeout)
    smartbin store clean --keep N   once it does: prune old versions
    on any failure after the switch: smartbin store reject (current and previous as they were
    before), reload again, and say so

Each command has a time limit that fits it (``RemoteSide``); see :meth:`Connection.run`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smartbin.device.errors import SmartbinError
from smartbin.device.vision.bundle import Bundle
from smartbin.device.vision.store import bundle_tar

from .fleet import Outcome
from .ssh import Connection, RemoteError

DEFAULT_RELOAD = ("systemctl", "reload", "smartbin")
# The slowest link a bin is expected on (poor Wi-Fi): an upload gets its size at this rate on top.
MIN_UPLOAD_BYTES_PER_S = 50_000
# Paths the bin reports are used in rsync targets: keep them plain.
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
    # One smartbin command on the bin: Python start-up, the store's checks, one inference.
    command_timeout: float = 60.0

    def transfer_timeout(self, size: int) -> float:
        return self.command_timeout + size / MIN_UPLOAD_BYTES_PER_S

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


def remote_json(
    conn: Connection, argv: Sequence[str], *, timeout: float, input: bytes | None = None
) -> dict[str, Any]:
    out = conn.run(argv, timeout=timeout, input=input).stdout.decode("utf-8", "replace")
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


def _daemon_status(conn: Connection, side: RemoteSide, limit: float) -> tuple[dict | None, str]:
    """The bin's ``smartbin status --json`` (None when it has none), and what to say when it fails."""
    result = conn.run(side.status(), check=False, timeout=limit)
    if result.returncode == 255:
        raise RemoteError(f"lost the connection to {conn.host} during the health check", "unreachable")
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, lines[-1].removeprefix(
            "smartbin: error: "
        ) if lines else f"status exit {result.returncode}"
    try:
        status = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None, "status is not JSON"
    return (status, "") if isinstance(status, dict) else (None, "status is not a JSON object")


def reload_and_check(conn: Connection, side: RemoteSide, expect: str | None, instead_of: str | None) -> str:
    """Reload the daemon and wait until it reports ``expect`` (or, with None, anything but ``instead_of``).

    A daemon that reports its reloads (``last_reload``) must show a new one, so a version it
    already ran before the reload does not pass for the new one; a reload it refused fails at
    once, with its reason.
    """
    if not side.reload:
        return "not reloaded (--reload-command is empty)"
    before, _ = _daemon_status(conn, side, side.command_timeout)
    reload_before = before.get("last_reload") if before else None
    conn.run(side.reload, timeout=side.command_timeout)
    deadline = time.monotonic() + side.health_timeout
    seen = "no status"
    while True:
        # A status that hangs may run past the deadline, by at most one command's time.
        status, seen_error = _daemon_status(
            conn, side, min(side.command_timeout, max(10.0, deadline - time.monotonic()))
        )
        if status is None:
            seen = seen_error
        else:
            version, reload = status.get("model_version"), status.get("last_reload")
            reloaded = "last_reload" not in status or (isinstance(reload, dict) and reload != reload_before)
            if reloaded and isinstance(reload, dict) and reload.get("ok") is False:
                raise RemoteError(f"the daemon refused the new model: {reload.get('error')}", "remote")
            if (
                reloaded
                and version is not None
                and (version == expect if expect is not None else version != instead_of)
            ):
                return f"daemon runs {version}"
            seen = f"daemon still runs {version}" + ("" if reloaded else " (no reload seen yet)")
        if time.monotonic() >= deadline:
            raise RemoteError(f"health check failed after {side.health_timeout:g} s: {seen}", "remote")
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def check_plain_path(path: str, conn: Connection) -> str:
    """A path the bin reported, before it goes into an rsync target."""
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
    quick = side.command_timeout
    info = remote_json(conn, side.store("clean"), timeout=quick)
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
    reuse = bool(here and here.get("ok"))
    if dry_run:
        steps = [
            f"activate the copy of {version} already on the bin"
            if reuse
            else f"upload {bundle.path} to {info['models_dir']}, verify and activate {version}",
            f"(live now: {current or 'the bundled default'})",
        ]
        if side.reload:
            steps.append(f"then run '{' '.join(side.reload)}' and wait up to {side.health_timeout:g} s")
        return "would deploy", " ".join(steps)

    if reuse:
        switch = remote_json(conn, side.store("activate", version), timeout=quick)
    else:
        tar = bundle_tar(bundle)
        argv = side.store("install", "-", "--sha256", bundle.sha256)
        switch = remote_json(conn, argv, input=tar, timeout=side.transfer_timeout(len(tar)))
    if switch.get("action") == "already-current":
        return "already current", f"{version} is already live; nothing to do"
    before = switch.get("previous")

    try:
        health = reload_and_check(conn, side, version, None)
    except RemoteError as failure:
        if switch.get("action") == "repaired":  # it was live before: there is nothing to switch back
            raise Outcome(
                "failed", f"{failure}; {version} stays live (its damaged copy was replaced)"
            ) from None
        raise Outcome("rolled back", f"{failure}; {_reject(conn, side, version, switch)}") from None
    return (
        "deployed",
        f"{version} is live, {health} (previous: {before or 'the bundled default'}){_prune(conn, side)}",
    )


def _prune(conn: Connection, side: RemoteSide) -> str:
    """Old versions go only once the new model is confirmed: until then a failed health check may
    need the version before ``previous`` back (``store reject``)."""
    try:
        remote_json(conn, side.store("clean", "--keep", str(side.keep)), timeout=side.command_timeout)
    except RemoteError as exc:
        return f"; old versions not pruned: {exc}"
    return ""


def _reject(conn: Connection, side: RemoteSide, failed: str, switch: dict[str, Any]) -> str:
    """After a failed health check: both pointers back as they were, reload, and say what is live now.

    ``store reject`` (not ``rollback``) so the failed version never becomes ``previous``.
    """
    argv = side.store("reject", failed)
    if switch.get("replaced"):
        argv += ["--previous", str(switch["replaced"])]
    try:
        back = remote_json(conn, argv, timeout=side.command_timeout)
    except RemoteError as exc:
        raise Outcome("failed", f"rollback of {failed} failed too: {exc}; fix the bin by hand") from None
    live = back.get("current") or "the bundled default model"
    if not side.reload:
        return f"back to {live}"
    try:
        conn.run(side.reload, timeout=side.command_timeout)
    except RemoteError as exc:
        return f"back to {live}, but the reload failed too: {exc}"
    return f"back to {live} (reloaded)"


def rollback_one(conn: Connection, side: RemoteSide) -> tuple[str, str]:
    """``smartbin deploy --rollback``: previous becomes current, reload, health check.

    Should the health check fail, the switch stays (it is what was asked for) and the line says
    so; a second ``--rollback`` goes back (rollback swaps the two pointers).
    """
    switch = remote_json(conn, side.store("rollback"), timeout=side.command_timeout)
    live, was = switch.get("current"), switch.get("previous")
    try:
        health = reload_and_check(conn, side, live, was)
    except RemoteError as failure:
        raise Outcome("failed", f"switched to {live or 'the bundled default'} but {failure}") from None
    return "rolled back", f"{live or 'the bundled default model'} is live, {health} (was {was})"


def list_one(conn: Connection, side: RemoteSide) -> dict[str, Any]:
    return remote_json(conn, side.store("list"), timeout=side.command_timeout)
