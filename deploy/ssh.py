"""Talk to a bin with OpenSSH's own ``ssh`` and ``rsync``.

Running the real clients means the user's keys, agent, ``~/.ssh/config`` and ``known_hosts``
work as they do in a terminal. Every call is batch mode (a password prompt would hang a
deploy) and refuses unknown host keys unless the user asked to accept new ones; a changed key
is always refused. Commands for the bin are argument lists joined with :func:`shlex.join`, so
the remote shell sees each argument as one word, never as shell syntax.

One master connection per host (``ControlMaster``) carries all the commands of a deploy, so
each step costs a round trip instead of a handshake.

Every command has a time limit that fits it, kept on both sides: on the bin it runs under
coreutils' ``timeout`` (a hung command, and anything it started, is stopped there even when the
connection is gone), and here the ``ssh`` client is killed a little later should the bin not
answer at all. Either way the step ends with "no answer from HOST after N s".
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartbin.device.errors import SmartbinError

log = logging.getLogger(__name__)

_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9._-]*)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*[= ]\S.*$")


# Seconds the bin gets to stop a timed-out command (TERM, then KILL) before the ssh client here is killed.
_GRACE = 10


class RemoteError(SmartbinError):
    """An SSH step failed. ``kind``: unreachable, host-key, auth, timeout, or remote (the command failed)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Host:
    """An SSH destination as the user wrote it: ``user@host``, ``host:port`` or a config alias."""

    text: str
    hostname: str
    user: str | None = None
    port: int | None = None
    # ssh options of this host alone (an inventory's key file, ProxyJump), before --ssh-option's
    options: tuple[str, ...] = ()

    @property
    def destination(self) -> str:
        """What ssh takes (the port travels as ``-o Port=``; an IPv6 address without brackets)."""
        host = self.hostname.strip("[]")
        return f"{self.user}@{host}" if self.user else host

    def remote_path(self, path: str) -> str:
        """``[user@]host:path`` for rsync (which needs an IPv6 address in brackets)."""
        host = f"[{self.hostname.strip('[]')}]" if ":" in self.hostname else self.hostname
        return f"{self.user}@{host}:{path}" if self.user else f"{host}:{path}"

    def __str__(self) -> str:
        return self.text


def parse_host(text: str) -> Host:
    """Validate a HOST argument; refuse anything ssh could read as an option or a shell could expand."""
    match = _HOST.match(text)
    if not match:
        raise SmartbinError(
            f"{text!r} is not an SSH destination; use user@host, host:port, user@host:port or an alias "
            "from ~/.ssh/config"
        )
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise SmartbinError(f"{text!r}: port {port} is out of range 1-65535")
    return Host(text=text, hostname=match["host"], user=match["user"], port=port)


@dataclass(frozen=True)
class SshOptions:
    """How to reach bins; the same for every host of one command."""

    config_file: Path | None = None
    options: tuple[str, ...] = ()
    accept_new_host_key: bool = False
    connect_timeout: int = 10

    def __post_init__(self) -> None:
        for option in self.options:
            if not _OPTION.match(option):
                raise SmartbinError(
                    f"--ssh-option {option!r} should look like Name=value (an ssh_config option)"
                )


def _classify(stderr: str, host: Host) -> RemoteError:
    """Turn ssh's own complaint into one line a user can act on."""
    text = stderr.strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("@", "Warning:"))]
    last = lines[-1].strip() if lines else "ssh failed without a message"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "differs from the key for" in text:
        return RemoteError(
            f"the host key of {host} has CHANGED (reinstalled bin, or someone in between); check it, "
            f"then remove the old key with 'ssh-keygen -R' and connect again",
            "host-key",
        )
    if "Host key verification failed" in text or "No ED25519 host key is known" in text:
        return RemoteError(
            f"the host key of {host} is not known; check it and add it to known_hosts, or pass "
            "--accept-new-host-key for a new bin",
            "host-key",
        )
    if "Permission denied" in text or "Too many authentication failures" in text:
        return RemoteError(
            f"permission denied for {host} ({last.split('(')[-1].rstrip(').') if '(' in last else 'auth'}); "
            "check the user name and that your key is in the bin's authorized_keys",
            "auth",
        )
    for needle, why in (
        ("Connection refused", "connection refused (is sshd running, is the port right?)"),
        ("timed out", "connection timed out (is the bin on and on this network?)"),
        ("Could not resolve hostname", "unknown host name (check the name or ~/.ssh/config)"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network is unreachable"),
        ("Connection closed", "the connection was closed by the bin"),
    ):
        if needle in text:
            return RemoteError(f"cannot reach {host}: {why}", "unreachable")
    return RemoteError(f"ssh to {host} failed: {last}", "unreachable")


def remote_failure(
    result: subprocess.CompletedProcess[bytes], argv: Sequence[str], host: Host
) -> RemoteError:
    """The one line that explains why a remote command exited non-zero."""
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode == 255:
        return _classify(stderr, host)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("smartbin: error: "):
            return RemoteError(line.removeprefix("smartbin: error: "), "remote")
    if result.returncode == 127:
        return RemoteError(
            f"{argv[0]} not found on {host}; install smartbin there ('smartbin bootstrap') "
            "or pass --remote-smartbin /path/to/smartbin",
            "remote",
        )
    why = f": {lines[-1]}" if lines else ""
    return RemoteError(f"'{argv[0]}' failed on {host} (exit {result.returncode}){why}", "remote")


def no_answer(host: Host, seconds: float, what: str) -> RemoteError:
    return RemoteError(
        f"no answer from {host} after {seconds:.0f} s ({what}); it was stopped there: is the bin hung "
        "or overloaded? ('smartbin status' on it)",
        "timeout",
    )


def run_tool(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run`` for ssh and rsync, with a one-line error when the tool is missing."""
    try:
        return subprocess.run(argv, check=False, **kwargs)
    except FileNotFoundError:
        raise SmartbinError(f"{argv[0]} is not installed here; install OpenSSH's client and rsync") from None


@dataclass
class Connection:
    """Commands and copies to one bin over one shared master connection."""

    host: Host
    options: SshOptions
    control_dir: Path | None = None
    _open: bool = field(default=False, init=False)

    def _base(self) -> list[str]:
        o = self.options
        args = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={o.connect_timeout}",
            "-o",
            f"StrictHostKeyChecking={'accept-new' if o.accept_new_host_key else 'yes'}",
        ]
        if o.config_file:
            args += ["-F", str(o.config_file)]
        for option in (*self.host.options, *o.options):  # ssh takes the first value given
            args += ["-o", option]
        # A bin that vanishes mid-deploy (power, Wi-Fi) ends the connection in 30 s, not at TCP's pace.
        args += ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if self.host.port:
            args += ["-o", f"Port={self.host.port}"]
        if self.control_dir:
            # One master per HOST as written: aliases of one machine keep their own settings.
            name = hashlib.sha256(self.host.text.encode()).hexdigest()[:16]
            args += ["-o", f"ControlPath={self.control_dir}/{name}"]
        return args

    def _client(self) -> list[str]:
        """Options of a command that uses the master connection (never becomes one)."""
        return [*self._base(), "-o", "ControlMaster=no"] if self.control_dir else self._base()

    def open(self) -> None:
        """Connect (and authenticate) once; later commands reuse this connection."""
        argv = ["ssh", *self._base()]
        if self.control_dir:
            # The master ends at close(); should this process die first, it ends once idle for 2 minutes.
            argv += ["-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-f", "-N"]
        else:
            argv += ["-T"]
        argv += ["--", self.host.destination]
        if not self.control_dir:
            argv.append("true")
        log.debug("%s: connecting", self.host)
        # The master stays in the background holding its stderr: give it a file, not a pipe.
        limit = self.options.connect_timeout + 20  # TCP connect, then key exchange and authentication
        with tempfile.TemporaryFile() as err:
            try:
                code = run_tool(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=limit,
                ).returncode
            except subprocess.TimeoutExpired:
                raise RemoteError(
                    f"no answer from {self.host} after {limit} s (connecting and logging in)", "unreachable"
                ) from None
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        if code != 0:
            raise _classify(stderr, self.host)
        self._open = True

    def close(self) -> None:
        if self._open and self.control_dir:
            try:
                run_tool(
                    ["ssh", *self._base(), "-O", "exit", "--", self.host.destination],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=30,
                )
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: the ssh master did not exit; it ends by itself after 2 idle minutes", self.host
                )
        self._open = False

    def __enter__(self) -> Connection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ssh_command(self) -> list[str]:
        """``ssh`` with this connection's options, for rsync's ``-e``."""
        return ["ssh", *self._client()]

    def run(
        self, argv: Sequence[str], *, timeout: float, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` on the bin for at most ``timeout`` seconds; with ``check``, a non-zero exit
        raises :class:`RemoteError` (a timeout always does)."""
        seconds = max(1, math.ceil(timeout))
        command = shlex.join(["timeout", "-k", "5", str(seconds), *argv])
        log.debug("%s$ %s", self.host, command)
        what = shlex.join([Path(argv[0]).name, *argv[1:3]])
        try:
            result = run_tool(
                ["ssh", *self._client(), "-T", "--", self.host.destination, command],
                input=input if input is not None else b"",
                capture_output=True,
                timeout=seconds + 5 + _GRACE,
            )
        except subprocess.TimeoutExpired:
            raise no_answer(self.host, seconds, what) from None
        if result.returncode in (124, 137):  # timeout stopped it (TERM, then KILL)
            raise no_answer(self.host, seconds, what)
        if check and result.returncode != 0:
            raise remote_failure(result, argv, self.host)
        return result
