"""Deploy to a running ``smartbin run`` daemon (mock pins, folder camera): reload by SIGHUP, health by status."""

from __future__ import annotations

from pathlib import Path

from smartbin.deploy.loopback import start_logging
from smartbin.device.cli import main
from smartbin.device.records.state import read_status
from smartbin.device.vision.bundle import load_bundle
from smartbin.device.vision.model import DEFAULT_MODEL

C4 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "colour4-int8"


def test_deploy_and_rollback_with_the_real_daemon(fleet, capsys):
    b = fleet.bins[0]
    fleet.release_locks()  # the real daemon takes them
    daemon, log, ready = start_logging([fleet.smartbin, "run", "--config", str(b.config)], " ready: ")
    try:
        assert ready.wait(60) and daemon.poll() is None, "".join(log[-5:])
        common = [*fleet.ssh_args(), "--reload-command", f"kill -HUP {daemon.pid}", "--health-timeout", "30"]

        assert main(["deploy", str(C4), "bin1", *common]) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith("bin1: deployed: colour4-int8-1 is live, daemon runs colour4-int8-1"), line
        status = read_status(b.state)
        assert status["model_version"] == "colour4-int8-1" and status["pid"] == daemon.pid

        assert main(["deploy", "--rollback", "bin1", *common]) == 0
        default = load_bundle(DEFAULT_MODEL).version
        line = capsys.readouterr().out.strip()
        assert line.startswith(
            f"bin1: rolled back: the bundled default model is live, daemon runs {default}"
        ), line
        assert any("reloaded: model" in x for x in log)
    finally:
        daemon.terminate()
        daemon.wait(30)


def test_a_version_the_daemon_already_ran_needs_a_reload_to_pass_the_health_check(fleet, capsys):
    """The daemon runs the bundled default; deploying that same bundle must see a reload happen."""
    b = fleet.bins[0]
    fleet.release_locks()  # the real daemon takes them
    daemon, log, ready = start_logging([fleet.smartbin, "run", "--config", str(b.config)], " ready: ")
    try:
        assert ready.wait(60) and daemon.poll() is None, "".join(log[-5:])
        default = load_bundle(DEFAULT_MODEL).version
        assert read_status(b.state)["model_version"] == default

        # a reload command that reloads nothing: the version alone would have passed
        idle = [*fleet.ssh_args(), "--reload-command", "true", "--health-timeout", "2"]
        assert main(["deploy", str(DEFAULT_MODEL), "bin1", *idle]) != 0
        line = capsys.readouterr().out.strip()
        assert "no reload seen yet" in line, line

        hup = [*fleet.ssh_args(), "--reload-command", f"kill -HUP {daemon.pid}", "--health-timeout", "30"]
        assert main(["deploy", str(DEFAULT_MODEL), "bin1", *hup]) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"bin1: deployed: {default} is live, daemon runs {default}"), line
        assert read_status(b.state)["last_reload"]["ok"] is True
    finally:
        daemon.terminate()
        daemon.wait(30)
