"""HOST parsing, and what reaches the bin's shell (a real sshd)."""

from __future__ import annotations

import pytest

from smartbin.deploy.fleet import control_dir
from smartbin.deploy.ssh import Connection, Host, SshOptions, parse_host
from smartbin.device.errors import SmartbinError


@pytest.mark.parametrize(
    ("text", "user", "hostname", "port"),
    [
        ("bin1", None, "bin1", None),
        ("pi@bin1.local", "pi", "bin1.local", None),
        ("bin1:2222", None, "bin1", 2222),
        ("pi@10.0.0.7:22", "pi", "10.0.0.7", 22),
        ("root@[fe80::1]:2200", "root", "[fe80::1]", 2200),
    ],
)
def test_hosts(text, user, hostname, port):
    assert parse_host(text) == Host(text, hostname, user, port)


@pytest.mark.parametrize(
    "text", ["-oProxyCommand=x", "bin1;id", "pi@bin 1", "bin1:0", "bin1:99999", "$(id)", "a@b@c", ""]
)
def test_hosts_ssh_or_a_shell_could_misread_are_refused(text):
    with pytest.raises(SmartbinError):
        parse_host(text)


def test_ipv6_destinations():
    host = parse_host("root@[fe80::1]:2200")
    assert host.destination == "root@fe80::1"
    assert host.remote_path("/var/lib/smartbin/models/x") == "root@[fe80::1]:/var/lib/smartbin/models/x"
    assert parse_host("bin1").remote_path("/m") == "bin1:/m"


def test_ssh_options_are_name_value():
    with pytest.raises(SmartbinError, match="Name=value"):
        SshOptions(options=("-oProxyCommand=x",))


def test_arguments_reach_the_bin_as_single_words(fleet):
    nasty = ["a b", "$(touch /tmp/pwned-smartbin)", "'quoted'", "semi;colon", "*", "~"]
    with (
        control_dir() as sockets,
        Connection(parse_host("bin1"), SshOptions(config_file=fleet.ssh_config), sockets) as c,
    ):
        out = c.run(["printf", "%s\\n", *nasty], timeout=30).stdout.decode()
        env = c.run(["printenv", "SMARTBIN_CONFIG"], timeout=30).stdout.decode().strip()
    assert out.splitlines() == nasty
    assert env == str(fleet.bins[0].config)  # each alias is its own bin


def test_batch_mode_and_strict_host_keys_by_default():
    conn = Connection(parse_host("pi@bin1:2222"), SshOptions())
    argv = conn.ssh_command()
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv and "Port=2222" in argv
    relaxed = Connection(parse_host("bin1"), SshOptions(accept_new_host_key=True)).ssh_command()
    assert "StrictHostKeyChecking=accept-new" in relaxed
