"""``smartbin deploy`` against a real sshd: each bin is a model store on this machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from smartbin.device.cli import main
from smartbin.device.records.state import read_status

from .conftest import assert_nothing_left

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

C3 = FIXTURE_MODELS / "colour3-int8"
C3F = FIXTURE_MODELS / "colour3-float32"
C4 = FIXTURE_MODELS / "colour4-int8"


def deploy(
    fleet, capsys, *args: str, reload: str | None = None, health: str = "20"
) -> tuple[int, list[str], str]:
    hosts = [b.alias for b in fleet.bins]
    reload = fleet.reload_command() if reload is None else reload
    code = main(
        ["deploy", *args, *hosts, *fleet.ssh_args(), "--reload-command", reload, "--health-timeout", health]
    )
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err


def result(lines: list[str], host: str) -> str:
    (line,) = [x for x in lines if x.startswith(f"{host}: ")]
    return line


def test_first_deploy_then_redeploy_is_a_no_op(fleet, capsys):
    b = fleet.bins[0]
    code, lines, _ = deploy(fleet, capsys, str(C3))
    assert code == 0, lines
    assert "bin1: deployed: colour3-int8-1 is live, daemon runs colour3-int8-1" in lines[0]
    assert b.current == "colour3-int8-1"
    assert read_status(b.state)["model_version"] == "colour3-int8-1"
    assert not [p for p in os.listdir(b.models) if p.startswith(".upload-")]

    mtime = (b.models / "colour3-int8-1").stat().st_mtime_ns
    code, lines, _ = deploy(fleet, capsys, str(C3))
    assert code == 0
    assert result(lines, "bin1").startswith("bin1: already current: colour3-int8-1 is already live")
    assert (b.models / "colour3-int8-1").stat().st_mtime_ns == mtime

    code, lines, _ = deploy(fleet, capsys, str(C4))
    assert code == 0, lines
    assert "deployed: colour4-int8-1 is live" in lines[0] and "(previous: colour3-int8-1)" in lines[0]
    assert b.current == "colour4-int8-1"
    assert os.readlink(b.models / "previous") == "colour3-int8-1"


def test_dry_run_changes_nothing(fleet, capsys):
    code, lines, _ = deploy(fleet, capsys, "--dry-run", str(C3))
    assert code == 0
    assert "would deploy: upload" in lines[0]
    assert fleet.bins[0].current is None
    assert not (fleet.bins[0].models / "colour3-int8-1").exists()


def test_a_bar_counts_the_bins_done_and_failed_when_asked(fleet, capsys, monkeypatch):
    _, _, err = deploy(fleet, capsys, "--dry-run", str(C3))
    assert "deploying" not in err  # stderr is no terminal
    monkeypatch.setenv("SMARTBIN_PROGRESS", "1")
    code, lines, err = deploy(fleet, capsys, "--dry-run", str(C3))
    n = len(fleet.bins)
    assert code == 0 and len(lines) == n and lines[0].startswith("bin1: would deploy")
    assert "deploying: 100%" in err and f"{n}/{n} [" in err and f"{n} done, 0 failed]" in err


def test_corrupted_bundle_is_refused_and_old_model_stays(fleet, capsys, bundle_copy):
    deploy(fleet, capsys, str(C3))
    bad = bundle_copy("colour4-int8")
    data = bytearray((bad / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.tflite").write_bytes(bytes(data))
    code, _, err = deploy(fleet, capsys, str(bad))
    assert code == 1
    assert "corrupt or truncated" in err and err.count("\n") == 1
    assert fleet.bins[0].current == "colour3-int8-1"


def test_a_copy_damaged_on_the_way_is_refused_by_the_bin(fleet, capsys, tmp_path):
    deploy(fleet, capsys, str(C3))
    b = fleet.bins[0]
    # The bin's smartbin, behind a wrapper that flips one byte of the model on its way in.
    wrapper = tmp_path / "smartbin-damaging"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys\n"
        "data = bytearray(sys.stdin.buffer.read())\n"
        "if 'install' in sys.argv:\n"
        "    data[data.index(b'TFL3') + 100] ^= 0xFF\n"
        f"sys.exit(subprocess.run([{fleet.smartbin!r}, *sys.argv[1:]], input=data).returncode)\n"
    )
    wrapper.chmod(0o755)
    code = main(
        ["deploy", str(C4), "bin1", "--ssh-config", str(fleet.ssh_config), "--remote-smartbin", str(wrapper)]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].startswith("bin1: refused: ") and "model.tflite is corrupt or truncated" in lines[0]
    assert b.current == "colour3-int8-1"
    assert not (b.models / "colour4-int8-1").exists()
    assert not [p for p in os.listdir(b.models) if p.startswith(".upload-")]


def test_labels_that_do_not_fit_the_bin_are_refused_by_the_bin(fleet, capsys, bundle_copy):
    deploy(fleet, capsys, str(C3))
    odd = bundle_copy("colour3-int8", labels=["can", "glass", "paper"], version="paper-1")
    code, lines, _ = deploy(fleet, capsys, str(odd))
    assert code == 1
    assert result(lines, "bin1").startswith("bin1: refused: ")
    assert "has no label plastic" in lines[0]
    b = fleet.bins[0]
    assert b.current == "colour3-int8-1"
    assert not (b.models / "paper-1").exists()
    assert not [p for p in os.listdir(b.models) if p.startswith(".upload-")]


def test_failed_health_check_rolls_back(fleet, capsys):
    deploy(fleet, capsys, str(C3))
    code, lines, _ = deploy(
        fleet, capsys, str(C4), reload="true", health="3"
    )  # a reload the daemon never sees
    b = fleet.bins[0]
    assert code == 1
    line = result(lines, "bin1")
    assert line.startswith(
        "bin1: rolled back: health check failed after 3 s: daemon still runs colour3-int8-1"
    )
    assert re.search(r"; back to colour3-int8-1 \(reloaded\) \(\d+\.\d s\)$", line), line
    assert b.current == "colour3-int8-1"


def test_failed_first_deploy_falls_back_to_the_bundled_default(fleet, capsys):
    code, lines, _ = deploy(fleet, capsys, str(C3), reload="false")
    assert code == 1
    assert lines[0].startswith("bin1: rolled back: 'false' failed on bin1 (exit 1); ")
    assert "; back to the bundled default model, but the reload failed too: 'false' failed" in lines[0]
    assert fleet.bins[0].current is None


def test_three_hosts_one_fails(make_fleet, capsys, tmp_path):
    fleet = make_fleet(3)
    # bin2's config sorts by a label no fixture model has: the bin refuses the bundle.
    cfg = fleet.bins[1].config
    cfg.write_text(
        cfg.read_text()
        + '[sorting.labels]\ncan = "can"\nglass = "glass"\nplastic = "plastic"\nmetal = "can"\n'
    )
    code, lines, err = deploy(fleet, capsys, "--jobs", "3", str(C3))
    assert code == 1
    assert len(lines) == 3
    assert "deployed" in result(lines, "bin1") and "deployed" in result(lines, "bin3")
    assert "refused" in result(lines, "bin2") and "has no label metal" in result(lines, "bin2")
    assert "1 of 3 bins failed" in err
    assert [b.current for b in fleet.bins] == ["colour3-int8-1", None, "colour3-int8-1"]


def test_rollback_command_and_models_listing(fleet, capsys):
    deploy(fleet, capsys, str(C3))
    deploy(fleet, capsys, str(C3F))
    code = main(["models", "bin1", *fleet.ssh_args()])
    out = capsys.readouterr().out
    assert code == 0
    assert "bin1: models in" in out
    live = [x for x in out.splitlines() if x.startswith("*")]
    assert len(live) == 1 and "colour3-float32-1" in live[0] and live[0].endswith("live")
    assert any("colour3-int8-1" in x and x.endswith("previous") for x in out.splitlines())

    code, lines, _ = deploy(fleet, capsys, "--rollback")
    assert code == 0, lines
    assert lines[0].startswith("bin1: rolled back: colour3-int8-1 is live, daemon runs colour3-int8-1")
    b = fleet.bins[0]
    assert b.current == "colour3-int8-1" and os.readlink(b.models / "previous") == "colour3-float32-1"


def test_leftovers_of_an_interrupted_upload_are_cleaned(fleet, capsys):
    b = fleet.bins[0]
    deploy(fleet, capsys, str(C3))
    half = b.models / ".upload-colour4-int8-1-deadbeef"
    shutil.copytree(C4, half)
    (half / "model.tflite").write_bytes(b"\0" * 10)  # the transfer died here
    assert b.current == "colour3-int8-1"
    code, _, _ = deploy(fleet, capsys, str(C3F))
    assert code == 0
    assert not half.exists()


def test_unknown_host_key_is_refused_unless_accepted(fleet, capsys, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = fleet.write_ssh_config(
        tmp_path / "ssh_config_unknown", {"bin1": fleet.bins[0].config}, known_hosts=empty
    )
    args = ["--ssh-config", str(cfg), "--remote-smartbin", fleet.ssh_args()[3]]
    code = main(["deploy", str(C3), "bin1", *args, "--reload-command", ""])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines == [lines[0]] and lines[0].startswith("bin1: refused: the host key of bin1 is not known")
    assert fleet.bins[0].current is None

    code = main(["deploy", str(C3), "bin1", *args, "--reload-command", "", "--accept-new-host-key"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert "not reloaded" in lines[0]
    assert fleet.sshd.host_key_line in empty.read_text()


def test_unreachable_host_and_wrong_user_are_one_line_errors(fleet, capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = fleet.write_ssh_config(tmp_path / "ssh_config_down", {}, port=closed)
    stranger = fleet.write_ssh_config(tmp_path / "ssh_config_stranger", {}, user="nosuchuser")
    code = main(["deploy", str(C3), "down", "--ssh-config", str(down), "--connect-timeout", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 1
    assert re.fullmatch(
        r"down: unreachable: cannot reach down: connection refused \(is sshd running, is the port right\?\) "
        r"\(\d+\.\d s\)",
        lines[0],
    ), lines
    code = main(["deploy", str(C3), "stranger", "--ssh-config", str(stranger)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(
        "stranger: refused: permission denied for stranger (publickey)"
    )


def test_store_json_from_the_bin(fleet, capsys):
    deploy(fleet, capsys, str(C3))
    code = main(["store", "list", "--json", "--config", str(fleet.bins[0].config)])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["current"] == "colour3-int8-1"
    assert [v["version"] for v in data["versions"]] == ["colour3-int8-1"]
    assert Path(data["models_dir"]) == fleet.bins[0].models.resolve()


def test_user_and_port_in_the_host_override_the_ssh_config(fleet, capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    b = fleet.bins[0]
    cfg = fleet.write_ssh_config(
        tmp_path / "ssh_config_wrong", {"bin1": b.config}, port=closed, user="nosuchuser"
    )
    host = f"{fleet.sshd.user}@bin1:{fleet.sshd.port}"
    code = main(
        [
            "deploy",
            str(C3),
            host,
            "--ssh-config",
            str(cfg),
            "--remote-smartbin",
            fleet.smartbin,
            "--reload-command",
            "",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0].startswith(f"{host}: deployed: colour3-int8-1 is live, not reloaded")
    assert b.current == "colour3-int8-1"


def test_one_login_per_bin_and_no_ssh_left_behind(make_fleet, capsys):
    fleet = make_fleet(3)
    before = fleet.sshd.logins()
    code, lines, _ = deploy(fleet, capsys, str(C3))
    assert code == 0, lines
    # All steps (list, scp, activate, reload, status) ride on one master connection per bin.
    assert fleet.sshd.logins() - before == 3
    assert_nothing_left(str(fleet.ssh_config))


def test_inventory_serial_stops_after_a_failed_batch(make_fleet, capsys, tmp_path):
    import socket

    fleet = make_fleet(2)
    b1, b2 = fleet.bins
    code, lines, _ = deploy(fleet, capsys, str(C3))
    assert code == 0, lines
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    kitchen:\n      hosts:\n"
        f"        down:\n          ansible_host: 127.0.0.1\n          ansible_port: {closed}\n"
        "        bin1:\n    lobby:\n      hosts:\n        bin2:\n"
    )
    before = fleet.sshd.logins()
    args = [*fleet.ssh_args(), "--reload-command", fleet.reload_command(), "--connect-timeout", "5"]
    # As an operator types it: the pattern after the options.
    code = main(["deploy", str(C4), "--inventory", str(inventory), "kitchen", "--serial", "1", *args])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert code == 1
    assert len(lines) == 2, lines
    assert result(lines, "down").startswith("down: unreachable: cannot reach down: connection refused")
    assert result(lines, "bin1") == (
        "bin1: not started: batch 1 of 2 failed on 1 of 1 bins (down; any failure stops a --serial run), "
        "so the run stopped before this bin"
    )
    assert "deploying: batch 1 of 2: down" in out.err
    assert "smartbin: 1 of 2 bins failed; 1 not started (--serial stopped the run)" in out.err
    # The second batch was never reached: no login, the old model still live and running.
    assert fleet.sshd.logins() == before
    assert b1.current == "colour3-int8-1"
    assert read_status(b1.state)["model_version"] == "colour3-int8-1"

    # A batch may fail up to --max-fail-percentage and the run goes on; INI works the same.
    ini = tmp_path / "hosts.ini"
    ini.write_text(f"[kitchen]\ndown ansible_host=127.0.0.1 ansible_port={closed}\nbin1\n[lobby]\nbin2\n")
    code = main(
        ["deploy", str(C4), "-i", str(ini), "all", "--serial", "1", "--max-fail-percentage", "100", *args]
    )
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert code == 1
    assert "unreachable" in result(lines, "down")
    assert "deployed: colour4-int8-1 is live" in result(lines, "bin1")
    assert "deployed: colour4-int8-1 is live" in result(lines, "bin2")
    assert "deploying: batch 3 of 3: bin2" in out.err
    assert [b1.current, b2.current] == ["colour4-int8-1", "colour4-int8-1"]
    assert read_status(b1.state)["model_version"] == "colour4-int8-1"


def test_inventory_host_vars_give_user_port_and_key(fleet, capsys, tmp_path):
    """An ssh config that names no port, user or key: the inventory's variables supply them."""
    b, sshd = fleet.bins[0], fleet.sshd
    bare = tmp_path / "ssh_config_bare"
    bare.write_text(
        f"Host bin1\n    SetEnv SMARTBIN_CONFIG={b.config}\n"
        f"Host *\n    HostName 127.0.0.1\n    IdentitiesOnly yes\n    UserKnownHostsFile {sshd.known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n    LogLevel ERROR\n"
    )
    inventory = tmp_path / "hosts"  # INI, as Ansible's default file name
    inventory.write_text(
        f"[bins]\nbin1 ansible_port={sshd.port}\n\n[bins:vars]\nansible_user={sshd.user}\n"
        f"ansible_ssh_private_key_file={sshd.client_key}\n"
    )
    args = ["--ssh-config", str(bare), "--remote-smartbin", fleet.smartbin]
    code = main(["models", "-i", str(inventory), "--limit", "bins", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("bin1: models in ")
    code = main(["deploy", str(C3), "-i", str(inventory), "bin1", *args, "--reload-command", ""])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0].startswith("bin1: deployed: colour3-int8-1 is live, not reloaded")
    assert b.current == "colour3-int8-1"
