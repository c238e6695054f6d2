"""systemd/smartbin.service: the essentials a bin relies on, and its hardening score.

The score check runs ``systemd-analyze security --offline=yes`` (systemd 252 or later); the
sandbox check also needs libseccomp. Both are skipped where these are missing, unless
SMARTBIN_REQUIRE_SYSTEMD_ANALYZE=1 (CI) turns the skip into a failure.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smartbin.device.cli import build_parser

from ..required import missing

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "smartbin.service"
MAX_EXPOSURE = 3.0


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file as {section: {key: [values in order]}}; keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        assert "=" in line, f"{path.name}: not key=value: {line}"
        key, value = (part.strip() for part in line.split("=", 1))
        current.setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as 30s, 1min 30s, 500ms or a bare number of seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT)["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    assert key in service, f"{key}= missing"
    return service[key][-1]


def test_unit_is_a_notify_service_with_a_watchdog(service) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert 0 < seconds(one(service, "WatchdogSec")) <= 120
    assert one(service, "Restart") == "on-failure"


def test_exec_start_runs_the_daemon_with_the_system_config(service) -> None:
    argv = shlex.split(one(service, "ExecStart"))
    assert Path(argv[0]).is_absolute() and argv[0].endswith("/bin/smartbin")
    assert argv[1:] == ["run", "--config", "/etc/smartbin/config.toml"]
    args = build_parser().parse_args(argv[1:])  # the command line the unit runs is a real one
    assert args.command == "run"


def test_reload_sends_sighup_to_the_main_process(service) -> None:
    argv = shlex.split(one(service, "ExecReload"))
    assert Path(argv[0]).name == "kill" and Path(argv[0]).is_absolute()
    assert argv[1:] == ["-HUP", "$MAINPID"]


def test_runs_as_an_unprivileged_user_with_only_gpio_and_camera_access(service) -> None:
    user = one(service, "User")
    assert user and user not in ("root", "0")
    assert one(service, "Group") == user
    assert set(" ".join(service["SupplementaryGroups"]).split()) == {"gpio", "video"}
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "CapabilityBoundingSet") == ""
    assert one(service, "DevicePolicy") == "closed"
    allowed = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"} <= allowed


def test_working_directory_is_the_writable_state_directory(service) -> None:
    state = one(service, "StateDirectory")
    assert one(service, "WorkingDirectory") == f"/var/lib/{state}"
    assert one(service, "ProtectSystem") == "strict"  # so the state directory is the writable place


def test_sysusers_and_tmpfiles_match_the_unit(service) -> None:
    user, state = one(service, "User"), one(service, "StateDirectory")
    sysusers = [line.split() for line in (SYSTEMD / "smartbin.sysusers.conf").read_text().splitlines()]
    sysusers = [fields for fields in sysusers if fields and not fields[0].startswith("#")]
    assert ["u", user] == sysusers[0][:2]
    assert {fields[2] for fields in sysusers if fields[0] == "m" and fields[1] == user} == {"gpio", "video"}
    tmpfiles = (SYSTEMD / "smartbin.tmpfiles.conf").read_text()
    assert re.search(rf"^d\s+/var/lib/{state}\s+\d+\s+{user}\s+{user}\b", tmpfiles, re.M)


def systemd_analyze() -> str:
    """The path to systemd-analyze if it can check a unit offline, else skip (or fail in CI)."""
    found = shutil.which("systemd-analyze")
    why = "systemd-analyze is not installed"
    if found:
        version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        match = re.match(r"systemd (\d+)", version)
        if match and int(match.group(1)) >= 252:
            return found
        why = f"systemd-analyze is too old for --offline (need 252): {version.splitlines()[:1]}"
    missing(why, "SYSTEMD_ANALYZE")


def test_security_exposure_is_at_most_3() -> None:
    analyze = systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for smartbin\.service: (\d+\.\d+)", output)
    assert match, output[-2000:]
    assert float(match.group(1)) <= MAX_EXPOSURE, output[-4000:]


# The unit's system call filter, applied with libseccomp to a child that runs the simulation:
# the daemon's code, the TFLite runtime, OpenCV, gpiozero and sqlite3 must live with it (and
# with MemoryDenyWriteExecute=, through the kernel's PR_SET_MDWE where the kernel has it).
SANDBOXED_SIMULATION = r"""
import ctypes, errno, os, sys
seccomp = ctypes.CDLL("libseccomp.so.2")
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
libc = ctypes.CDLL(None, use_errno=True)
ctx = ctypes.c_void_p(seccomp.seccomp_init(ctypes.c_uint32(0x00050000 | errno.EPERM)))  # else: EPERM
for name in os.environ["ALLOWED_SYSCALLS"].split():
    number = seccomp.seccomp_syscall_resolve_name(name.encode())
    if number >= 0:
        assert seccomp.seccomp_rule_add(ctx, ctypes.c_uint32(0x7FFF0000), number, 0) == 0, name
mdwe = libc.prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
assert seccomp.seccomp_load(ctx) == 0
print(f"MDWE={mdwe}", file=sys.stderr)
from smartbin.device.cli import main
sys.exit(main(["simulate", "--fast", "--json", "--state-dir", os.environ["STATE_DIR"]]))
"""


def syscalls(analyze: str, items: list[str], seen: dict[str, set[str]]) -> set[str]:
    """The system call names of SystemCallFilter= items, groups expanded by systemd-analyze."""
    names: set[str] = set()
    for item in items:
        if not item.startswith("@"):
            names.add(item)
            continue
        if item not in seen:
            seen[item] = set()
            listing = subprocess.run(
                [analyze, "syscall-filter", item], capture_output=True, text=True, check=True
            )
            members = [line.strip() for line in listing.stdout.splitlines()[1:]]
            seen[item] = syscalls(analyze, [m for m in members if m and not m.startswith("#")], seen)
        names |= seen[item]
    return names


def test_simulation_runs_under_the_units_system_call_filter(service, tmp_path: Path) -> None:
    analyze = systemd_analyze()
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        missing("libseccomp.so.2 is not installed (apt install libseccomp2)", "SYSTEMD_ANALYZE")
    assert one(service, "SystemCallErrorNumber") == "EPERM"
    assert one(service, "MemoryDenyWriteExecute") == "yes"
    allowed: set[str] = set()
    seen: dict[str, set[str]] = {}
    for entry in service["SystemCallFilter"]:
        deny = entry.startswith("~")
        names = syscalls(analyze, entry.removeprefix("~").split(), seen)
        allowed = allowed - names if deny else allowed | names
    assert "mount" not in allowed and "setrlimit" not in allowed and "read" in allowed
    assert "setpriority" in allowed  # the review page's threads give way to the sorting
    env = dict(os.environ, ALLOWED_SYSCALLS=" ".join(sorted(allowed)), STATE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", SANDBOXED_SIMULATION], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    items = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len([item for item in items if "image" in item]) == 18, result.stdout[-2000:]
