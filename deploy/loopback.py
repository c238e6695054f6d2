"""A bin on this machine: OpenSSH's ``sshd`` on 127.0.0.1 and a running daemon, for trying
``deploy``, ``rollback``, ``collect`` and ``retrain`` without a Pi (``smartbin loopback-bin``).

``sshd -D`` runs as the current user (no root) from a folder of its own: a host key, a client key
that is the only one let in, and a config that listens on 127.0.0.1 only. The deploy tests start
their sshd with :func:`start_sshd` too (``tests/deploy/conftest.py``).

The daemon is ``smartbin run`` on gpiozero's mock pins with the folder camera on the bundled
sample photos and the review page on another port of 127.0.0.1; before its first start,
``smartbin simulate`` sorts those photos once into the bin's event log and photo folder, so
``collect`` has something to bring home and the page something to label (``retrain`` trains only
on labelled photos).
"""

from __future__ import annotations

import fcntl
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from smartbin.device.errors import SmartbinError, os_error_reason
from smartbin.device.hardware.cameras import SAMPLES_DIR
from smartbin.device.home.web.token import create_token
from smartbin.device.vision.model import DEFAULT_MODEL

ALIAS = "loopback-bin"
PACKAGES = "openssh-server openssh-client rsync"  # Debian's packages for sshd, ssh and ssh-keygen, rsync
READY_S = 120.0  # the daemon loads its model before it says ready; a busy 2-core machine is slow
TRY_BUNDLE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "models" / "colour4-int8"


def sshd_path() -> str:
    """Where sshd is: on PATH, else Debian's /usr/sbin (not on a normal user's PATH)."""
    return shutil.which("sshd") or "/usr/sbin/sshd"


def missing_tools() -> list[str]:
    """The OpenSSH and rsync programs a loopback sshd and its clients need that are not installed."""
    tools = (sshd_path(), "ssh", "ssh-keygen", "rsync")
    return [t for t in tools if not shutil.which(t) and not os.access(t, os.X_OK)]


def start_logging(
    argv: list[str], marker: str, log_file: TextIO | None = None
) -> tuple[subprocess.Popen[str], list[str], threading.Event]:
    """Start ``argv`` and return it, its stderr lines (a list that grows, or written to ``log_file``
    instead) and an event set once a line contains ``marker`` (or the process exits, so a waiter
    never hangs on a dead process)."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log: list[str] = []
    seen = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            if log_file is None:
                log.append(line)
            else:
                log_file.write(line)
                log_file.flush()
            if marker in line:
                seen.set()
        seen.set()

    threading.Thread(target=drain, daemon=True).start()
    return proc, log, seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_problem(port: int) -> str | None:
    """Why sshd could not listen on 127.0.0.1:``port``, or None."""
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd does
            s.bind(("127.0.0.1", port))
    except OSError as exc:
        return os_error_reason(exc)
    return None


def keygen(path: Path, comment: str = "smartbin-test") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Sshd:
    """A running ``sshd -D`` on 127.0.0.1 that lets in ``client_key`` as ``user``."""

    port: int
    dir: Path
    user: str
    client_key: Path
    known_hosts: Path
    host_key_line: str
    log: list[str]  # sshd's own log lines, as they come (empty when they go to a file)

    def logins(self) -> int:
        return sum("Accepted publickey" in line for line in self.log)


def _quoted(path: Path) -> str:
    """A path as one word in an ssh or sshd config (which takes double quotes)."""
    return f'"{path}"'


def start_sshd(
    d: Path,
    *,
    port: int | None = None,
    set_env: dict[str, str] | None = None,
    log_file: TextIO | None = None,
) -> tuple[Sshd, subprocess.Popen[str]]:
    """Start sshd as this user on 127.0.0.1:``port`` (a free one if None) with keys in ``d`` (made
    if missing) and return it once it listens. ``set_env``: environment of every session."""
    d.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        if not (d / key).is_file():
            keygen(d / key)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = port or free_port()
    # One line: sshd takes the first SetEnv it reads and ignores the others.
    env = (
        "SetEnv " + " ".join(f'"{name}={value}"' for name, value in set_env.items()) + "\n" if set_env else ""
    )
    (d / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {_quoted(d / "host_key")}
PidFile {_quoted(d / "sshd.pid")}
AuthorizedKeysFile {_quoted(d / "authorized_keys")}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AcceptEnv SMARTBIN_CONFIG
{env}Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
LogLevel INFO
"""
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    argv = [sshd_path(), "-D", "-e", "-f", str(d / "sshd_config")]
    proc, log, listening = start_logging(argv, "Server listening", log_file)
    if not listening.wait(20) or proc.poll() is not None:
        proc.kill()
        proc.wait()
        last = "".join(log[-5:]).strip() or (f"see {log_file.name}" if log_file else "no message")
        raise SmartbinError(f"sshd did not start: {last}")
    host_key = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    sshd = Sshd(
        port, d, getpass.getuser(), d / "client_key", d / "known_hosts", f"{host_key[0]} {host_key[1]}", log
    )
    return sshd, proc


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/smartbin/loopback-bin`` (``~/.cache/...``): kept between runs, safe to remove."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "smartbin" / ALIAS


def _hold(lock: Path) -> int:
    """Lock the folder for this process (released when it exits, however it exits)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SmartbinError(
            f"{lock.parent} is already a running loopback bin (pid {pid}); stop it there (Ctrl-C) "
            "or give another --dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _write_bin(d: Path, web_port: int) -> Path:
    """The bin's config (mock pins, folder camera on the samples, photos saved, the review page on
    127.0.0.1:``web_port``) and a ``bin/smartbin`` that runs this smartbin, as bootstrap's
    ``/usr/local/bin/smartbin`` does on a Pi; return the config."""
    config = d / "config.toml"
    config.write_text(
        f"""# A loopback bin, written by 'smartbin loopback-bin' at each start.
[gpio]
pin_factory = "mock"

[camera]
kind = "folder"
source = "{SAMPLES_DIR}"

[images]
save = true

[web]
listen = "127.0.0.1:{web_port}"

[paths]
state_dir = "{d}/state"
models_dir = "{d}/models"
events_db = "{d}/state/events.db"
images_dir = "{d}/state/images"
"""
    )
    wrapper = d / "bin" / "smartbin"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m smartbin.device.cli "$@"\n')
    wrapper.chmod(0o755)
    return config


def _stop(proc: subprocess.Popen[str] | None, seconds: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def next_commands(d: Path, bundle: Path) -> list[list[str]]:
    """What to try on a loopback bin in ``d``, as argument lists."""
    ssh = ["--ssh-config", str(d / "ssh_config")]
    reload = ["--reload-command", shlex.join(["pkill", "-HUP", "-F", str(d / "daemon.pid")])]
    return [
        ["smartbin", "deploy", *ssh, *reload, str(bundle), ALIAS],
        ["ssh", "-F", str(d / "ssh_config"), ALIAS, "smartbin", "status"],
        ["smartbin", "deploy", "--rollback", *ssh, *reload, ALIAS],
        ["smartbin", "models", *ssh, ALIAS],
        ["smartbin", "collect", *ssh, ALIAS, "--out", "loopback-photos"],
        ["smartbin", "retrain", *ssh, *reload, ALIAS, "--base", "PHOTO_SET", "--work", "loopback-retrain"],
    ]


def run_loopback_bin(d: Path, port: int | None) -> None:
    """Start the loopback bin in ``d``, print what to try, and serve until interrupted (Ctrl-C,
    SIGTERM: ``KeyboardInterrupt``); then stop sshd and the daemon."""
    missing = missing_tools()
    if missing:
        raise SmartbinError(f"{missing[0]} is not installed; install it with: sudo apt install {PACKAGES}")
    if port is not None and not 0 < port < 65536:
        raise SmartbinError(f"--port {port} is out of range 1-65535")
    if port is not None and (why := port_problem(port)):
        raise SmartbinError(f"--port {port}: 127.0.0.1:{port}: {why}; give another --port or leave it out")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SmartbinError(f"--dir {d}: cannot create it ({os_error_reason(exc)})") from None
    lock = _hold(d / "loopback-bin.lock")
    sshd = daemon = None
    logs = [open(d / name, "a") for name in ("sshd.log", "daemon.log")]  # noqa: SIM115 (closed below)
    try:
        web_port = free_port()
        config = _write_bin(d, web_port)
        token_file = d / "state" / "web-token"
        token = token_file.read_text().strip() if token_file.is_file() else create_token(token_file)
        smartbin = str(d / "bin" / "smartbin")
        if not (d / "state" / "events.db").exists():
            print(
                f"{ALIAS}: sorting the sample photos once, for collect (smartbin simulate; simulate.log)",
                flush=True,
            )
            with open(d / "simulate.log", "w") as out:
                done = subprocess.run(
                    [
                        smartbin,
                        "simulate",
                        "--fast",
                        "--config",
                        str(config),
                        "--state-dir",
                        str(d / "state"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if done.returncode != 0:
                raise SmartbinError(f"smartbin simulate failed: {_last_line(d / 'simulate.log')}")
        path = f"{d / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        server, sshd = start_sshd(
            d, port=port, set_env={"PATH": path, "SMARTBIN_CONFIG": str(config)}, log_file=logs[0]
        )
        daemon, _, started = start_logging([smartbin, "run", "--config", str(config)], " ready: ", logs[1])
        if not started.wait(READY_S) or daemon.poll() is not None:
            raise SmartbinError(f"the daemon did not start: {_last_line(d / 'daemon.log')}")
        (d / "daemon.pid").write_text(f"{daemon.pid}\n")
        (d / "ssh_config").write_text(
            f"""Host {ALIAS}
    HostName 127.0.0.1
    Port {server.port}
    User {server.user}
    IdentityFile {_quoted(server.client_key)}
    IdentitiesOnly yes
    UserKnownHostsFile {_quoted(server.known_hosts)}
    GlobalKnownHostsFile /dev/null
    LogLevel ERROR
"""
        )
        bundle = TRY_BUNDLE if TRY_BUNDLE.is_dir() else DEFAULT_MODEL
        print(
            f"{ALIAS}: sshd on 127.0.0.1:{server.port} as {server.user} (lets in only its own key), "
            f"daemon pid {daemon.pid} on mock pins with the sample photos as its camera; files in {d}"
        )
        print(f"{ALIAS}: review page http://127.0.0.1:{web_port}/ (token {token}): label photos for retrain")
        print("Try, from another terminal:")
        for argv in next_commands(d, bundle):
            print(f"  {shlex.join(argv)}")
        print(
            "(retrain: with smartbin[train] installed, your photo set as PHOTO_SET, photos labelled on the page)"
        )
        print("Ctrl-C stops it.", flush=True)
        while sshd.poll() is None and daemon.poll() is None:
            time.sleep(0.5)
        name, log = ("sshd", "sshd.log") if sshd.poll() is not None else ("the daemon", "daemon.log")
        raise SmartbinError(f"{name} stopped: {_last_line(d / log)}")
    finally:
        _stop(daemon, 30)
        _stop(sshd, 10)
        (d / "daemon.pid").unlink(missing_ok=True)
        for log in logs:
            log.close()
        os.close(lock)
