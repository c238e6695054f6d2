"""Ansible inventories (YAML and INI) and ``--serial`` batches, without ssh."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smartbin.deploy.fleet import HostResult, Serial
from smartbin.deploy.inventory import load_inventory
from smartbin.deploy.ssh import Connection, Host, SshOptions
from smartbin.device.cli import main
from smartbin.device.errors import SmartbinError

YAML = """\
all:
  vars:
    ansible_user: pi
  hosts:
    spare:
  children:
    kitchen:
      vars:
        ansible_port: 2200
      hosts:
        bin-k1:
          ansible_host: 10.0.0.7
        bin-k[2:3]:
      children:
        kitchen_east:
          vars:
            ansible_user: east
          hosts:
            bin-e1:
              ansible_port: 22
    lobby:
      hosts:
        bin-l1:2222:
        bin-k1:
"""

# The same inventory as Ansible's INI (where [group:vars] values are text).
INI = """\
# bins
spare

[kitchen]
bin-k1 ansible_host=10.0.0.7
bin-k[2:3]

[kitchen_east]
bin-e1 ansible_port=22

[kitchen_east:vars]
ansible_user=east

[kitchen:children]
kitchen_east

[kitchen:vars]
ansible_port=2200

[all:vars]
ansible_user=pi

[lobby]
bin-l1:2222
bin-k1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(params=["hosts.yml", "hosts.ini", "hosts"])
def inventory(request, tmp_path):
    """The same fleet as YAML, as INI, and as INI in a file without a suffix (Ansible's 'hosts')."""
    text = YAML if request.param.endswith(".yml") else INI
    return load_inventory(write(tmp_path, request.param, text))


def test_groups_nested_children_ranges_and_ungrouped(inventory):
    assert list(inventory.host_vars) == ["spare", "bin-k1", "bin-k2", "bin-k3", "bin-e1", "bin-l1"]
    assert inventory.members("kitchen") == ["bin-k1", "bin-k2", "bin-k3", "bin-e1"]
    assert inventory.members("kitchen_east") == ["bin-e1"]
    assert inventory.members("ungrouped") == ["spare"]
    assert len(inventory.members("all")) == 6
    assert set(inventory.groups) == {"all", "ungrouped", "kitchen", "kitchen_east", "lobby"}


def test_vars_are_inherited_and_the_innermost_wins(inventory):
    hosts = {h.text: h for h in inventory.hosts(["all"])}
    assert hosts["spare"] == Host("spare", "spare", "pi", None)  # all's vars only
    assert hosts["bin-k1"] == Host("bin-k1", "10.0.0.7", "pi", 2200)  # host var, group var, all's var
    assert hosts["bin-k2"] == Host("bin-k2", "bin-k2", "pi", 2200)
    # kitchen_east is inside kitchen: its user beats all's, the host's own port beats kitchen's
    assert hosts["bin-e1"] == Host("bin-e1", "bin-e1", "east", 22)
    assert hosts["bin-l1"] == Host("bin-l1", "bin-l1", "pi", 2222)  # the port in the host's name


@pytest.mark.parametrize(
    ("patterns", "limit", "selected"),
    [
        (["kitchen"], None, ["bin-k1", "bin-k2", "bin-k3", "bin-e1"]),
        (["kitchen_east", "lobby"], None, ["bin-k1", "bin-e1", "bin-l1"]),  # in the file's order
        (["kitchen:lobby"], None, ["bin-k1", "bin-k2", "bin-k3", "bin-e1", "bin-l1"]),
        (["kitchen,&lobby"], None, ["bin-k1"]),
        (["kitchen:!kitchen_east:!bin-k2"], None, ["bin-k1", "bin-k3"]),
        (["!kitchen"], None, ["spare", "bin-l1"]),  # only exclusions: from all
        (["bin-k*"], None, ["bin-k1", "bin-k2", "bin-k3"]),
        (["~bin-[el]"], None, ["bin-e1", "bin-l1"]),
        (["all"], "lobby", ["bin-k1", "bin-l1"]),
        (["*"], "kitchen:!bin-k1", ["bin-k2", "bin-k3", "bin-e1"]),
        (["spare"], None, ["spare"]),
    ],
)
def test_patterns(inventory, patterns, limit, selected):
    assert inventory.select(patterns, limit) == selected


def test_unknown_pattern_names_the_groups(inventory):
    with pytest.raises(SmartbinError) as err:
        inventory.select(["kichen"])
    assert str(err.value) == (
        f"--inventory {inventory.path}: no group or host 'kichen' (did you mean kitchen?); its groups: all, "
        "kitchen, kitchen_east, lobby, ungrouped (6 hosts)"
    )
    with pytest.raises(SmartbinError, match=r"no group or host 'nowhere' \(in --limit\)"):
        inventory.select(["all"], "nowhere")
    with pytest.raises(SmartbinError, match="'bin-x\\*'"):
        inventory.select(["bin-x*"])
    with pytest.raises(SmartbinError, match="'lobby:&kitchen_east' selects no hosts"):
        inventory.select(["lobby:&kitchen_east"])


def test_key_file_and_ssh_args_become_ssh_options(tmp_path):
    key = tmp_path / "bins key"
    key.write_text("not really a key")
    path = write(
        tmp_path,
        "hosts.yml",
        f"""\
        all:
          vars:
            ansible_ssh_private_key_file: {key}
            ansible_ssh_common_args: -o ProxyJump=gate -oServerAliveInterval=5
          hosts:
            bin1:
              ansible_ssh_host: fe80::1
              ansible_ssh_extra_args: -J jump2
        """,
    )
    host = load_inventory(path).host("bin1")
    assert host.hostname == "fe80::1" and host.destination == "fe80::1"
    assert host.remote_path("/x") == "[fe80::1]:/x"
    assert host.options == (
        f'IdentityFile="{key}"',
        "ProxyJump=gate",
        "ServerAliveInterval=5",
        "ProxyJump=jump2",
    )
    # ssh takes an option's first value: the host's own come before --ssh-option's
    args = Connection(host, SshOptions(options=("IdentityFile=/other",)))._base()
    assert args.index(f'IdentityFile="{key}"') < args.index("IdentityFile=/other")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  hosts:\n    a:\n   b: 1\n", r"hosts.yml line 4: not valid YAML \("),
        ("- a\n- b\n", "should be a mapping of groups .* got a list"),
        ("", "empty; it should start with all:"),
        ("all:\n  host:\n    a:\n", r"all: unknown key 'host'; a group has hosts:, children: and vars:"),
        ("all:\n  hosts: a\n", "all > hosts: should be a mapping of host names .* got a text"),
        ("all:\n  hosts:\n    - a\n", "got a list"),
        (
            "all:\n  children:\n    g:\n      hosts:\n        a:\n          - 1\n",
            "a host's variables should be a mapping",
        ),
        (
            "all:\n  children:\n    g:\n      children:\n        h:\n          children:\n            g:\n",
            "group g contains itself",
        ),
        (
            "all:\n  hosts:\n    a:\n      ansible_port: twenty\n",
            "host a: ansible_port should be a port number 1-65535, got 'twenty'",
        ),
        (
            "all:\n  hosts:\n    a:\n      ansible_port: 70000\n",
            "ansible_port should be a port number 1-65535, got 70000",
        ),
        ("all:\n  hosts:\n    a:\n      ansible_port: true\n", "ansible_port should be a port number"),
        (
            "all:\n  hosts:\n    a:\n      ansible_host: [1, 2]\n",
            r"host a: ansible_host should be a text, got \[1, 2\]",
        ),
        (
            "all:\n  hosts:\n    a:\n      ansible_host: 'x y'\n",
            "ansible_host 'x y' is not a host name or an IP address",
        ),
        ("all:\n  hosts:\n    a:\n      ansible_user: 7\n", "ansible_user should be a text, got 7"),
        ("all:\n  hosts:\n    a:\n      ansible_host: '{{ ip }}'\n", "is a Jinja template"),
        ("all:\n  hosts:\n    a:\n      ansible_connection: local\n", "reaches bins only over ssh"),
        (
            "all:\n  hosts:\n    a:\n      ansible_ssh_private_key_file: /no/such/key\n",
            "/no/such/key: no such file",
        ),
        (
            "all:\n  hosts:\n    a:\n      ansible_ssh_common_args: -A\n",
            "only -o Name=value and -J host options, not '-A'",
        ),
        ("all:\n  hosts:\n    bin[3:1]:\n", "the range is empty"),
        ("all:\n  hosts:\n    bin[01:100]:\n", "zero-padded range has start and end of one width"),
        ("all:\n  hosts:\n    'bin/x':\n", "'bin/x' is not a host name"),
    ],
)
def test_yaml_errors_are_one_line(tmp_path, text, message):
    path = write(tmp_path, "hosts.yml", text)
    with pytest.raises(SmartbinError, match=message) as err:
        load_inventory(path).hosts(["all"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[kitchen\nbin1\n", r"hosts.ini line 1: '\[kitchen' is not a section"),
        ("[kitchen:stuff]\nbin1\n", r"line 1: \[kitchen:stuff\]: a section is"),
        (
            "[kitchen]\nbin1 ansible_port\n",
            "line 2: expected key=value after the host name, got 'ansible_port'",
        ),
        ("[kitchen]\nbin1 'open\n", "line 2: cannot split"),
        ("[kitchen]\nbin1\n[lobby:vars]\nx=1\n", r"line 3: \[lobby:vars\] for a group that no"),
        ("[kitchen:vars]\nansible_port\n", r"line 2: expected key=value in \[kitchen:vars\]"),
        (
            "[kitchen]\nbin1\n[kitchen:vars]\nansible_port=http\n",
            "host bin1: ansible_port should be a port number",
        ),
    ],
)
def test_ini_errors_name_the_line(tmp_path, text, message):
    path = write(tmp_path, "hosts.ini", text)
    with pytest.raises(SmartbinError, match=message):
        load_inventory(path).hosts(["all"])


def test_ini_inline_values_are_literals_and_ranges_step(tmp_path):
    path = write(
        tmp_path,
        "hosts.ini",
        """\
        [bins]
        bin[01:05:2] ansible_port=2222 ansible_user="pi"  # a comment
        bin-[a:c]
        """,
    )
    inventory = load_inventory(path)
    assert inventory.select(["bins"]) == ["bin01", "bin03", "bin05", "bin-a", "bin-b", "bin-c"]
    assert inventory.host("bin03") == Host("bin03", "bin03", "pi", 2222)


def test_group_priority_and_sibling_order(tmp_path):
    path = write(
        tmp_path,
        "hosts.yml",
        """\
        all:
          children:
            b_group:
              vars: {ansible_user: bee}
              hosts: {bin1: }
            a_group:
              vars: {ansible_user: ay, ansible_port: 2000}
              hosts: {bin1: , bin2: }
            z_group:
              vars: {ansible_port: 3000, ansible_group_priority: 0}
              hosts: {bin2: }
        """,
    )
    inventory = load_inventory(path)
    assert inventory.host("bin1").user == "bee"  # siblings by name: b after a wins
    assert inventory.host("bin2").port == 2000  # a lower priority loses though z sorts last


@pytest.mark.parametrize(
    ("sizes", "batches"),
    [
        (("1",), [[0], [1], [2], [3], [4]]),
        (("2",), [[0, 1], [2, 3], [4]]),
        (("40%",), [[0, 1], [2, 3], [4]]),
        (("10%",), [[0], [1], [2], [3], [4]]),  # at least one
        (("1", "3"), [[0], [1, 2, 3], [4]]),  # the last size repeats
        (("100%",), [[0, 1, 2, 3, 4]]),
    ],
)
def test_serial_batches(sizes, batches):
    hosts = [Host(f"b{i}", f"b{i}") for i in range(5)]
    assert Serial(sizes).batches(hosts) == batches


def test_max_fail_percentage_must_be_exceeded():
    ok, bad = HostResult("a", "deployed", "", 1, True), HostResult("b", "refused", "", 1, False)
    assert Serial(("2",)).stops([ok, bad])
    assert not Serial(("2",)).stops([ok, ok])
    assert not Serial(("2",), 50).stops([ok, bad])  # 50 % failed: not more than 50
    assert Serial(("2",), 49).stops([ok, bad])
    assert not Serial(("1",), 100).stops([bad])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inventory", "{tmp}/nope.yml", "kitchen"], "--inventory {tmp}/nope.yml: no such file"),
        (["--inventory", "{tmp}", "kitchen"], "a folder; give the inventory file itself"),
        (
            ["--inventory", "{tmp}/hosts.yml"],
            "name the bins: a group, a host or all (its groups: all, kitchen,",
        ),
        (["--inventory", "{tmp}/hosts.yml", "kichen"], "no group or host 'kichen' (did you mean kitchen?)"),
        (["--limit", "kitchen", "bin1"], "--limit selects hosts of an inventory; give --inventory FILE too"),
        (["--max-fail-percentage", "10", "bin1"], "--max-fail-percentage applies to --serial batches"),
        (["--serial", "0", "bin1"], "argument --serial: expected a number of bins (1 or more)"),
        (["--serial", "150%", "bin1"], "argument --serial: expected a share of the bins from 1% to 100%"),
        (["--serial", "1", "--max-fail-percentage", "101", "bin1"], "expected a percentage 0-100, got 101"),
    ],
)
def test_bad_command_lines_are_one_line(tmp_path, capsys, args, message):
    write(tmp_path, "hosts.yml", YAML)
    bundle = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "colour3-int8"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        code = main(["deploy", str(bundle), *args])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert err.count("\n") == 1 and message.replace("{tmp}", str(tmp_path)) in err, err
