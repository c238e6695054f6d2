"""The review page's mistakes and misuse: the token command, a bad [web] table, an address that is
taken or malformed, and Ctrl-C on a simulation that serves its page. Each ends in one
``smartbin: error:`` line or a clean exit; every case runs the real command in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import MODELS, assert_one_line_error, run_smartbin


def config_with(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[classifier]\nmodel = "{MODELS / "colour3-int8"}"\nthreads = 1\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n[web]\n{web}\n'
    )
    return path


def test_web_token_is_created_once_with_mode_600(tmp_path):
    config = config_with(tmp_path, f'token_file = "{tmp_path / "secret" / "token"}"')
    first = run_smartbin("web", "token", "--config", config)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    path = tmp_path / "secret" / "token"
    assert path.read_text().strip() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = run_smartbin("web", "token", "--config", config)
    assert_one_line_error(again, str(path), "exists", "--force")
    assert path.read_text().strip() == token  # untouched

    path.chmod(0o644)
    forced = run_smartbin("web", "token", "--config", config, "--force")
    assert forced.returncode == 0 and forced.stdout.strip() not in ("", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_web_token_defaults_to_the_state_dir(tmp_path):
    config = config_with(tmp_path, "")
    result = run_smartbin("web", "token", "--config", config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "state" / "web-token").read_text().strip() == result.stdout.strip()


def test_web_token_where_no_file_can_be(tmp_path):
    (tmp_path / "plain").write_text("a file, not a folder")
    config = config_with(tmp_path, f'token_file = "{tmp_path / "plain" / "token"}"')
    assert_one_line_error(run_smartbin("web", "token", "--config", config), "cannot write the token file")
    config = config_with(tmp_path, f'token_file = "{tmp_path}"')
    assert_one_line_error(run_smartbin("web", "token", "--config", config), "is a directory")


def test_web_link_makes_the_token_first_and_prints_a_link_whose_code_is_never_sent(tmp_path):
    config = config_with(tmp_path, 'listen = "127.0.0.1:8080"')
    result = run_smartbin("web", "link", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "no token yet: wrote a new one" in result.stderr
    link, until = result.stdout.splitlines()  # not a terminal: no QR code
    assert link.startswith("http://127.0.0.1:8080/signin#") and "once, until" in until
    code = link.partition("#")[2]
    held = (tmp_path / "state" / "web-token.signin").read_text()
    assert (
        code not in held and stat.S_IMODE((tmp_path / "state" / "web-token.signin").stat().st_mode) == 0o600
    )
    (tmp_path / "state" / "web-token").chmod(0o644)
    assert_one_line_error(run_smartbin("web", "link", "--config", config), "too open", "chmod 600")


def test_web_link_without_a_page_says_how_to_turn_it_on(tmp_path):
    result = run_smartbin("web", "link", "--config", config_with(tmp_path, ""))
    assert_one_line_error(result, "the review page is off", "listen")
    assert not (tmp_path / "state" / "web-token").exists()


def test_a_bad_web_table_names_the_key(tmp_path):
    result = run_smartbin("config", "check", config_with(tmp_path, 'listen = "8080"'))
    assert_one_line_error(result, "web.listen", "HOST:PORT", "'8080'")
    result = run_smartbin("config", "check", config_with(tmp_path, "port = 8080"))
    assert_one_line_error(result, "web.port", "unknown key", "listen, token_file")


def test_simulate_web_with_a_malformed_or_taken_address(tmp_path):
    for malformed in ("8080", "[::1:8080", "::1]:8080"):  # no host; brackets that do not pair
        result = run_smartbin("simulate", "--fast", "--web", malformed)
        assert result.returncode == 2
        assert_one_line_error(result, "--web", "HOST:PORT")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_smartbin(
            "simulate", "--fast", "--web", f"127.0.0.1:{port}", env={"XDG_STATE_HOME": str(tmp_path)}
        )
    assert_one_line_error(result, f"--web: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "ERROR" not in result.stderr and "keeps sorting" not in result.stderr  # refused before the daemon


def test_simulate_web_serves_until_ctrl_c(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = config_with(tmp_path, "")  # its state_dir is the simulation's
    command = [
        "simulate",
        "--fast",
        "--web",
        f"127.0.0.1:{port}",
        "--config",
        config,
        "--state-dir",
        tmp_path / "state",
    ]
    sim = subprocess.Popen(
        [sys.executable, "-m", "smartbin.device.cli", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(tmp_path)},
    )
    try:
        lines = []
        while not (lines and lines[-1].startswith("review page at") and "Ctrl-C" in lines[-1]):
            line = sim.stdout.readline()
            assert line, f"simulate ended early:\n{''.join(lines)}\n{sim.stderr.read()}"
            lines.append(line)
        assert lines[-1] == f"review page at http://127.0.0.1:{port}/; Ctrl-C stops it\n"
        assert any(line.startswith("accuracy:") for line in lines)  # the summary came first
        # the sign-in link came before the first item, and signs in once
        assert lines[0].startswith(f"review page at http://127.0.0.1:{port}/; sign in")
        link = lines[1].strip()
        assert link.startswith(f"http://127.0.0.1:{port}/signin#") and "until" in lines[2]
        assert lines[3].split()[0] == "1"  # the first item's line
        code = link.partition("#")[2]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/signin",
            json.dumps({"code": code}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "HttpOnly" in response.headers["Set-Cookie"]
        time.sleep(0.2)  # after the last item, still serving
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
            status = json.load(response)
        assert status["items"] == 18 and status["state"] == "ready"
        shown = run_smartbin("status", "--config", config)
        assert f"\nweb:      http://127.0.0.1:{port}/ (a phone signs in with 'smartbin web link')\n" in (
            shown.stdout
        )
        sim.send_signal(signal.SIGINT)
        _, err = sim.communicate(timeout=30)
    finally:
        sim.kill()
    assert sim.returncode == 0, err
    assert "Traceback" not in err and "error" not in err
