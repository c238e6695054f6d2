"""``smartbin bootstrap`` against a real sshd, into a temporary prefix, without the root-only steps."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from smartbin.deploy.bootstrap import REPO
from smartbin.device.cli import main
from smartbin.device.config import EXAMPLE_CONFIG


def stub_wheel(directory: Path, main: str = "print('stub')") -> Path:
    """A small installable 'smartbin' wheel whose command runs ``main`` (no build, no network)."""
    files = {
        "smartbin_stub/__init__.py": f"def main():\n    {main}\n".encode(),
        "smartbin-0.1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: smartbin\nVersion: 0.1.0\n",
        "smartbin-0.1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "smartbin-0.1.0.dist-info/entry_points.txt": b"[console_scripts]\nsmartbin = smartbin_stub:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("smartbin-0.1.0.dist-info/RECORD,,")
    files["smartbin-0.1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / "smartbin-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def test_bootstrap_installs_then_changes_nothing(fleet, capsys, tmp_path):
    prefix = tmp_path / "root"
    argv = [
        "bootstrap",
        "bin1",
        "--prefix",
        str(prefix),
        "--wheel",
        str(stub_wheel(tmp_path)),
        "--remote-python",
        sys.executable,
        "--no-deps",
        "--skip-apt",
        "--skip-user",
        "--skip-systemd",
        "--ssh-config",
        str(fleet.ssh_config),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "bin1: bootstrapped (6 of 7 steps changed something)"
    venv = prefix / "opt/smartbin/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (prefix / "etc/smartbin/config.toml").read_text() == EXAMPLE_CONFIG.read_text()
    unit = prefix / "etc/systemd/system/smartbin.service"
    assert unit.read_text() == (REPO / "systemd/smartbin.service").read_text()
    assert (
        "ExecStart=/opt/smartbin/venv/bin/smartbin run" in unit.read_text()
    )  # where bootstrap puts the venv
    link = prefix / "usr/local/bin/smartbin"
    assert os.readlink(link) == str(venv / "bin/smartbin")
    assert subprocess.run([link], capture_output=True, text=True, check=True).stdout == "stub\n"
    assert oct((prefix / "var/lib/smartbin/models").stat().st_mode & 0o7777) == "0o2770"

    (prefix / "etc/smartbin/config.toml").write_text("# edited on the bin\n")
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "bin1: already bootstrapped; nothing changed"
    assert all(" ok " in line for line in lines[:-1]), lines
    assert (prefix / "etc/smartbin/config.toml").read_text() == "# edited on the bin\n"  # never overwritten


def test_root_steps_are_refused_without_root(monkeypatch, capsys):
    from smartbin.deploy import bootstrap_remote

    monkeypatch.setattr(bootstrap_remote.os, "geteuid", lambda: 1000)
    payload = {"prefix": "/nonexistent", "skip_apt": False, "skip_user": True, "skip_systemd": False}
    with pytest.raises(SystemExit) as exit_:
        bootstrap_remote.main(payload)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert (
        err
        == "smartbin: error: apt, systemd need root: connect as root, pass --sudo, or skip them (--skip-apt)\n"
    )
