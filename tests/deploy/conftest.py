"""A real OpenSSH server on 127.0.0.1 and "bins" that are model stores on this machine.

The session starts ``sshd -D`` on a free port with a temporary host key, authorized_keys and
config, running as the current user (``smartbin.deploy.loopback.start_sshd``, which
``smartbin loopback-bin`` uses too). Clients use a temporary ssh config (``-F``), key and
known_hosts, so the user's own ~/.ssh is never read or written. Each bin is an ssh alias whose
``SetEnv SMARTBIN_CONFIG=...`` points the remote ``smartbin`` at that bin's config (its own
model store and state directory), so many bins share one sshd.

Without sshd the tests are skipped, unless SMARTBIN_REQUIRE_SSHD=1 (CI), where that fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smartbin.deploy.loopback import PACKAGES, Sshd, missing_tools, start_sshd
from smartbin.device.errors import SmartbinError
from smartbin.device.records.lock import StateDirLock

from ..required import missing

REPO = Path(__file__).resolve().parents[2]
FIXTURE_MODELS = REPO / "tests" / "fixtures" / "models"
SMARTBIN = str(Path(sys.executable).parent / "smartbin")
FAKE_DAEMON = Path(__file__).with_name("fake_daemon.py")


@pytest.fixture(scope="session")
def ssh_tools() -> None:
    """Skip (with SMARTBIN_REQUIRE_SSHD=1: fail) without sshd, ssh, ssh-keygen or rsync."""
    for tool in missing_tools():
        missing(f"{tool} is not installed (apt install {PACKAGES})", "SSHD")


@pytest.fixture(scope="session")
def sshd(ssh_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    try:
        server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SmartbinError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Bin:
    alias: str
    dir: Path
    config: Path

    @property
    def models(self) -> Path:
        return self.dir / "models"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def current(self) -> str | None:
        link = self.models / "current"
        return os.readlink(link) if link.is_symlink() else None


@dataclass
class Fleet:
    bins: list[Bin]
    ssh_config: Path
    sshd: Sshd
    smartbin: str = SMARTBIN  # the "remote" smartbin: this venv's
    # This process stands in for each bin's daemon (fake_daemon.py writes its pid): it holds their
    # locks, by which `smartbin status` judges a daemon alive. A test that starts a real one releases them.
    locks: list[StateDirLock] = field(default_factory=list)

    def release_locks(self) -> None:
        _release(self.locks)

    def ssh_args(self) -> list[str]:
        return ["--ssh-config", str(self.ssh_config), "--remote-smartbin", self.smartbin]

    def reload_command(self) -> str:
        """A reload that does what the daemon does on SIGHUP and writes status.json (fake_daemon.py)."""
        return shlex.join([sys.executable, str(FAKE_DAEMON), "--pid", str(os.getpid())])

    def write_ssh_config(self, path: Path, aliases: dict[str, Path | None], **changes) -> Path:
        """Another client config for the same sshd (other known_hosts, port or user)."""
        path.write_text(ssh_config_text(self.sshd, aliases, **changes))
        return path


def write_bin_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{directory}/state"\nmodels_dir = "{directory}/models"\n'
        f'images_dir = "{directory}/images"\nevents_db = "{directory}/events.db"\n'
    )
    return config


def ssh_config_text(
    sshd: Sshd, aliases: dict[str, Path | None], *, known_hosts: Path | None = None, port=None, user=None
) -> str:
    blocks = []
    for alias, config in aliases.items():
        lines = [f"Host {alias}"]
        if config is not None:
            lines.append(f"    SetEnv SMARTBIN_CONFIG={config}")
        blocks.append("\n".join(lines))
    blocks.append(
        f"""Host *
    HostName 127.0.0.1
    Port {port or sshd.port}
    User {user or sshd.user}
    IdentityFile {sshd.client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts or sshd.known_hosts}
    GlobalKnownHostsFile /dev/null
    LogLevel ERROR
"""
    )
    return "\n".join(blocks)


def build_fleet(sshd: Sshd, directory: Path, n: int) -> Fleet:
    """n bins (aliases bin1..binN) under ``directory``, each with its own config and model store."""
    bins = []
    for i in range(1, n + 1):
        d = directory / f"bin{i}"
        bins.append(Bin(f"bin{i}", d, write_bin_config(d)))
    ssh_config = directory / "ssh_config"
    ssh_config.write_text(ssh_config_text(sshd, {b.alias: b.config for b in bins}))
    fleet = Fleet(bins, ssh_config, sshd, locks=[StateDirLock(b.state) for b in bins])
    for lock in fleet.locks:
        lock.acquire()
    weakref.finalize(fleet, _release, fleet.locks)
    return fleet


def _release(locks: list[StateDirLock]) -> None:
    for lock in locks:
        lock.release()


@pytest.fixture
def make_fleet(sshd: Sshd, tmp_path: Path):
    """``make_fleet(n)``: see :func:`build_fleet`."""
    return lambda n=1: build_fleet(sshd, tmp_path, n)


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(1)


@pytest.fixture
def bundle_copy(tmp_path: Path):
    """``bundle_copy(name, **manifest_changes)``: a copy of a fixture bundle to modify."""
    import itertools
    import json

    counter = itertools.count()

    def copy(name: str, **changes) -> Path:
        dst = tmp_path / "bundles" / f"{name}-{next(counter)}"
        shutil.copytree(FIXTURE_MODELS / name, dst)
        if changes:
            manifest = json.loads((dst / "manifest.json").read_text())
            manifest.update(changes)
            (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return dst

    return copy


def processes_with(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (zombies and this test excluded)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(proc.name) != os.getpid() and text.encode() in b" ".join(args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def assert_nothing_left(*texts: str) -> None:
    """No process on either side (the 'bin' is this machine) still mentions any of ``texts``."""
    deadline = time.monotonic() + 10  # an ssh master asked to exit may take a moment
    while (left := [p for t in texts for p in processes_with(t)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


@pytest.fixture
def publisher(broker):
    """An MQTT client on the test's broker that publishes what bins would (retained states)."""
    from ..device.home.mqtt_broker import Subscriber

    client = Subscriber(broker.port, topics=("nothing/at/all",))
    yield client
    client.close()
