"""``smartbin loopback-bin`` end to end: start it, run the commands it prints (deploy, status over
ssh, rollback, collect), stop it with SIGTERM, and nothing is left running."""

from __future__ import annotations

import queue
import shlex
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

from smartbin.device.cli import main

from .conftest import FIXTURE_MODELS, SMARTBIN, assert_nothing_left

STARTED = "Ctrl-C stops it."


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's output lines as they come; None once it closes."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str | None], last: str, seconds: float) -> list[str]:
    seen: list[str] = []
    while (line := lines.get(timeout=seconds)) is not None:
        seen.append(line)
        if line == last:
            return seen
    raise AssertionError("\n".join(seen))


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A printed command, with this venv's smartbin for ``smartbin``."""
    argv = [SMARTBIN if argv[0] == "smartbin" else argv[0], *argv[1:]]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_printed_commands_deploy_show_and_roll_back_then_it_stops(ssh_tools, tmp_path):
    d = tmp_path / "bin"
    proc = subprocess.Popen(
        [SMARTBIN, "loopback-bin", "--dir", str(d)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _lines(proc)
        printed = _until(lines, STARTED, 240)
        deploy, status, rollback, _models, collect, _retrain = (
            shlex.split(x) for x in printed if x.startswith("  ")
        )
        assert deploy[-2:] == [str(FIXTURE_MODELS / "colour4-int8"), "loopback-bin"]

        page = next(x for x in printed if "review page http://" in x).split()[3]
        with urllib.request.urlopen(page + "healthz", timeout=30) as answer:
            assert answer.status == 200

        done = _run(deploy, tmp_path)
        assert done.stdout.startswith(
            "loopback-bin: deployed: colour4-int8-1 is live, daemon runs colour4-int8-1"
        ), done.stdout + done.stderr
        done = _run(status, tmp_path)
        assert "model:    colour4-int8-1" in done.stdout, done.stdout + done.stderr
        done = _run(rollback, tmp_path)
        assert done.stdout.startswith("loopback-bin: rolled back: the bundled default model is live"), (
            done.stdout + done.stderr
        )
        done = _run(collect, tmp_path)
        assert "loopback-bin: collected: " in done.stdout, done.stdout + done.stderr
        assert (tmp_path / "loopback-photos" / "events.db").is_file()

        port = int(next(x for x in printed if "sshd on 127.0.0.1:" in x).split(":")[2].split()[0])
        for argv, why in (
            (["--dir", str(d)], f"{d} is already a running loopback bin (pid {proc.pid})"),
            (["--dir", str(tmp_path / "other"), "--port", str(port)], f"127.0.0.1:{port}: "),
        ):
            done = _run(["smartbin", "loopback-bin", *argv], tmp_path)
            assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
            assert done.stderr.startswith("smartbin: error: ") and why in done.stderr, done.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        rest = list(iter(lambda: lines.get(timeout=10), None))
        assert rest[-1].startswith(
            f"loopback-bin: stopped sshd and the daemon; the bin's files stay in {d}"
        ), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(str(d))


def test_without_sshd_it_names_the_package(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("smartbin.deploy.loopback.missing_tools", lambda: ["/usr/sbin/sshd"])
    assert main(["loopback-bin", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "smartbin: error: /usr/sbin/sshd is not installed; install it with: "
        "sudo apt install openssh-server openssh-client rsync\n"
    )
