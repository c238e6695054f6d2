"""The bin-side half of ``smartbin bootstrap``: sent over SSH and run by the bin's python3.

Standard library only (the bin has no smartbin yet). ``main(payload)`` runs each step; a step
looks first and changes only what differs, so a second run reports no changes. It prints one
JSON object: ``{"steps": [{"step", "changed", "detail"}, ...]}``; on failure one
``smartbin: error:`` line on stderr and exit status 1.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

APT_PACKAGES = ("python3-picamera2", "python3-lgpio", "python3-venv", "rsync")
USER = "smartbin"
GROUPS = ("gpio", "video")


class StepError(Exception):
    pass


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        why = (result.stderr or result.stdout).strip().splitlines()
        raise StepError(f"'{' '.join(argv[:3])}' failed: {why[-1] if why else result.returncode}")
    return result


class Bootstrap:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.p = payload
        self.root = Path(payload["prefix"])
        self.steps: list[dict[str, Any]] = []
        self.venv = self.path("/opt/smartbin/venv")
        self.restart = False

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def step(self, name: str, changed: bool, detail: str) -> None:
        self.steps.append({"step": name, "changed": changed, "detail": detail})
        self.restart |= changed and name in ("smartbin", "config", "unit")

    def apt(self) -> None:
        missing = []
        for package in APT_PACKAGES:
            status = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
            ).stdout
            if "install ok installed" not in status:
                missing.append(package)
        if not missing:
            self.step("apt", False, f"{', '.join(APT_PACKAGES)} installed")
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
        self.step("apt", True, f"installed {', '.join(missing)}")

    def user(self) -> None:
        changes = []
        for group in (*GROUPS, USER):
            try:
                grp.getgrnam(group)
            except KeyError:
                _run(["groupadd", "--system", group])
                changes.append(f"group {group}")
        try:
            pwd.getpwnam(USER)
        except KeyError:
            home = ["--home-dir", "/var/lib/smartbin", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            _run(["useradd", "--system", "--gid", USER, *home, USER])
            changes.append(f"user {USER}")
        have = {g.gr_name for g in grp.getgrall() if USER in g.gr_mem}
        for group in GROUPS:
            if group not in have:
                _run(["usermod", "-aG", group, USER])
                changes.append(f"{USER} in {group}")
        deployer = os.environ.get("SUDO_USER")
        if deployer and deployer != "root" and deployer not in grp.getgrnam(USER).gr_mem:
            _run(["usermod", "-aG", USER, deployer])
            changes.append(f"{deployer} in {USER} (may deploy models)")
        self.step("user", bool(changes), ", ".join(changes) if changes else f"{USER} in {', '.join(GROUPS)}")

    def dirs(self) -> None:
        owned = not self.p["skip_user"] and os.geteuid() == 0
        changes = []
        for path, mode, owner in (
            ("/etc/smartbin", 0o750, "root"),
            ("/var/lib/smartbin", 0o750, USER),
            ("/var/lib/smartbin/models", 0o2770, USER),
        ):
            d = self.path(path)
            if not d.is_dir():
                d.mkdir(parents=True)
                d.chmod(mode)
                changes.append(f"{path} ({mode:o})")
            elif (d.stat().st_mode & 0o7777) != mode:
                d.chmod(mode)
                changes.append(f"{path} mode {mode:o}")
            if owned:
                uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(USER).gr_gid
                if (d.stat().st_uid, d.stat().st_gid) != (uid, gid):
                    os.chown(d, uid, gid)
                    changes.append(f"{path} owner {owner}:{USER}")
        self.step(
            "dirs",
            bool(changes),
            ", ".join(changes) if changes else "/etc/smartbin, /var/lib/smartbin/models",
        )

    def venv_step(self) -> None:
        cfg = self.venv / "pyvenv.cfg"
        if cfg.is_file() and "include-system-site-packages = true" in cfg.read_text():
            self.step("venv", False, f"{self.venv} (with system site packages)")
            return
        _run([self.p["python"], "-m", "venv", "--clear", "--system-site-packages", str(self.venv)])
        self.step(
            "venv", True, f"created {self.venv} with --system-site-packages (picamera2, lgpio from apt)"
        )

    def wheel(self) -> None:
        marker = self.venv / "smartbin-wheel.sha256"
        digest = self.p["wheel_digest"]
        if marker.is_file() and marker.read_text().strip() == digest:
            self.step("smartbin", False, f"{self.p['wheel_name']} installed")
            return
        pip = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        with tempfile.TemporaryDirectory() as tmp:
            wheel = Path(tmp) / self.p["wheel_name"]
            wheel.write_bytes(base64.b64decode(self.p["wheel_b64"]))
            _run([*pip, "--no-deps", "--force-reinstall", str(wheel)])
            if not self.p["no_deps"]:
                # numpy<2 on Bookworm (Python 3.11): its apt picamera2 extensions are built for numpy 1.24
                # (docs/hardware.md). Trixie's (Python 3.13) are built for numpy 2; 1.x has no 3.13 wheels.
                pins = ["numpy<2"] if sys.version_info < (3, 12) else []
                _run([*pip, f"{wheel}[device]", *pins])
        marker.write_text(digest + "\n")
        self.step("smartbin", True, f"installed {self.p['wheel_name']}")

    def link(self) -> None:
        link, target = self.path("/usr/local/bin/smartbin"), self.venv / "bin" / "smartbin"
        if link.is_symlink() and os.readlink(link) == str(target):
            self.step("command", False, f"{link} -> {target}")
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(".smartbin.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
        self.step("command", True, f"{link} -> {target}")

    def _install_file(self, path: Path, text: str, mode: int, *, replace: bool) -> bool:
        if path.is_file() and (not replace or path.read_text() == text):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        if not self.p["skip_user"] and os.geteuid() == 0:
            os.chown(tmp, 0, grp.getgrnam(USER).gr_gid)
        os.replace(tmp, path)
        return True

    def config(self) -> None:
        path = self.path("/etc/smartbin/config.toml")
        explicit = self.p["config_explicit"]
        if self._install_file(path, self.p["config_text"], 0o640, replace=explicit):
            self.step(
                "config",
                True,
                f"installed {path}" + ("" if explicit else " (the example: edit it for your bin)"),
            )
        else:
            self.step("config", False, f"{path} kept")

    def check(self) -> None:
        """Run the installed smartbin once, as the service would start it: never report a bin done
        (or start its service) when its smartbin cannot start."""
        config = self.path("/etc/smartbin/config.toml")
        argv = [str(self.venv / "bin" / "smartbin"), "config", "check", str(config)]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StepError(f"the installed smartbin cannot start ({exc}); run bootstrap again") from None
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            why = lines[-1].removeprefix("smartbin: error: ") if lines else f"exit {result.returncode}"
            raise StepError(
                f"the installed smartbin cannot start: {why}; fix that, then run bootstrap again "
                "(the service was not started)"
            )
        self.step("check", False, f"smartbin starts and accepts {config}")

    def unit(self) -> None:
        path = self.path("/etc/systemd/system/smartbin.service")
        changed = self._install_file(path, self.p["unit_text"], 0o644, replace=True)
        self.step("unit", changed, f"{'installed' if changed else 'kept'} {path}")
        if self.p["skip_systemd"]:
            return
        done = []
        if changed:
            _run(["systemctl", "daemon-reload"])
        if subprocess.run(["systemctl", "is-enabled", "--quiet", "smartbin"], check=False).returncode != 0:
            _run(["systemctl", "enable", "smartbin"])
            done.append("enabled")
        active = (
            subprocess.run(["systemctl", "is-active", "--quiet", "smartbin"], check=False).returncode == 0
        )
        if not active:
            _run(["systemctl", "start", "smartbin"])
            done.append("started")
        elif self.restart:
            _run(["systemctl", "restart", "smartbin"])
            done.append("restarted")
        self.step("service", bool(done), ", ".join(done) if done else "enabled and running")

    def run(self) -> list[dict[str, Any]]:
        root_steps = [s for s in ("apt", "user", "systemd") if not self.p[f"skip_{s}"]]
        if root_steps and os.geteuid() != 0:
            raise StepError(
                f"{', '.join(root_steps)} need root: connect as root, pass --sudo, or skip them (--skip-{root_steps[0]})"
            )
        if not self.p["skip_apt"]:
            self.apt()
        if not self.p["skip_user"]:
            self.user()
        self.dirs()
        self.venv_step()
        self.wheel()
        self.link()
        self.config()
        self.check()
        self.unit()
        return self.steps


def main(payload: dict[str, Any]) -> None:
    try:
        steps = Bootstrap(payload).run()
    except (StepError, OSError) as exc:
        print(f"smartbin: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"steps": steps}))


if __name__ == "__main__":
    main(json.load(sys.stdin))
