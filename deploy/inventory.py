"""Ansible-style inventories: ``--inventory FILE``, so operators keep one list of bins for both tools.

Reads Ansible's two static formats as its ``yaml`` and ``ini`` inventory plugins do:

- YAML: top-level groups (usually ``all``), each with ``hosts:`` (a mapping of host names to their
  variables), ``children:`` (groups inside it, nested as deep as wanted) and ``vars:``.
- INI: ``host key=value ...`` lines under ``[group]`` (before any section: ``ungrouped``),
  ``[group:children]`` listing child groups and ``[group:vars]`` with ``key=value`` lines.

Host names may carry ``:port`` and ranges (``bin[01:20]``, ``bin-[a:c]``). Every host is in ``all``;
a host in no other group is in ``ungrouped``. A host's variables are those of ``all``, then of its
groups from the outermost to the innermost (siblings by name, or ``ansible_group_priority``), then
its own, the later winning, as in Ansible.

Of the variables, only the connection ones mean something here; they become a :class:`~.ssh.Host`:
``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file`` (the older
``ansible_ssh_host``/``_port``/``_user`` spellings too) and ``-o``/``-J`` options in
``ansible_ssh_common_args``/``ansible_ssh_extra_args``. Anything else (``ansible_become``, your own
variables) is left alone. Only the hosts a command selects are checked, so a broken entry elsewhere
in a big inventory does not stop a deploy to the kitchen.

Patterns select hosts as Ansible's do: group or host names, ``all`` (or ``*``), wildcards
(``bin-*``), ``~regex``, and lists joined with ``:`` or ``,`` where ``&group`` keeps only hosts also
in that group and ``!group`` leaves a group's hosts out.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import ipaddress
import re
import shlex
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartbin.device.errors import SmartbinError

from .ssh import Host

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_RANGE = re.compile(r"^(?P<head>[^\[\]]*)\[(?P<body>[^\[\]]+)\](?P<tail>.*)$")
_INI_SECTION = re.compile(r"^\[(?P<group>[^:\]\s]+)(?::(?P<kind>\w+))?\]\s*(?:[#;].*)?$")
_YAML_SUFFIXES = (".yml", ".yaml", ".json")
_GROUP_KEYS = ("hosts", "children", "vars")

# Ansible's names for the connection settings, newest spelling first.
HOST_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user", "ansible_remote_user")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    """The groups and hosts of one inventory file, in the file's order."""

    path: Path
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    # Building (the parsers) ----------------------------------------------------------------------

    def group(self, name: str) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_host(self, group: str, name: str, variables: dict[str, Any]) -> None:
        self.host_vars.setdefault(name, {}).update(variables)
        members = self.group(group).hosts
        if name not in members:
            members.append(name)

    def add_child(self, parent: str, child: str, where: str) -> None:
        if child == "all":
            raise SmartbinError(f"{where}: 'all' cannot be a child group; every group is already in it")
        self.group(child)
        children = self.group(parent).children
        if child not in children:
            children.append(child)

    def finish(self) -> Inventory:
        """Add ``all`` and ``ungrouped`` as Ansible does, and refuse a group that contains itself."""
        everything = self.group("all")
        for name in list(self.groups):
            if name != "all" and name not in everything.children and not self._parents(name):
                everything.children.append(name)
        for name in list(self.groups):
            self._check_cycle(name, [name])
        # A host in no group but all (listed straight under all:, or before any INI section) is ungrouped.
        grouped = {h for name, g in self.groups.items() if name not in ("all", "ungrouped") for h in g.hosts}
        for host in self.host_vars:
            if host not in grouped:
                self.add_host("ungrouped", host, {})
        if "ungrouped" not in everything.children:
            everything.children.append(self.group("ungrouped").name)
        return self

    def _parents(self, name: str) -> list[str]:
        return [g.name for g in self.groups.values() if name in g.children]

    def _check_cycle(self, name: str, chain: list[str]) -> None:
        for child in self.groups[name].children:
            if child in chain:
                loop = " > ".join([*chain[chain.index(child) :], child])
                raise SmartbinError(f"{self.path}: group {child} contains itself ({loop})")
            self._check_cycle(child, [*chain, child])

    # Reading ----------------------------------------------------------------------------------------

    def members(self, group: str) -> list[str]:
        """The hosts of ``group`` and of the groups inside it, in the file's order."""
        found: set[str] = set()

        def walk(name: str) -> None:
            g = self.groups[name]
            found.update(g.hosts)
            for child in g.children:
                walk(child)

        walk(group)
        if group == "all":
            found.update(self.host_vars)
        return [h for h in self.host_vars if h in found]

    def groups_of(self, host: str) -> list[str]:
        """Every group ``host`` is in (through children too), in Ansible's order of precedence:
        ``all`` first, then by depth, by ``ansible_group_priority``, by name; the last one wins."""
        direct = [name for name, g in self.groups.items() if host in g.hosts]
        found: set[str] = {"all"}
        todo = list(direct)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo += self._parents(name)
        depth = {name: self._depth(name) for name in found}

        def priority(name: str) -> int:
            value = self.groups[name].vars.get("ansible_group_priority", 1)
            return value if isinstance(value, int) and not isinstance(value, bool) else 1

        return sorted(found, key=lambda name: (depth[name], priority(name), name))

    def _depth(self, name: str) -> int:
        """The longest chain of parents from ``all`` (``all``: 0), as Ansible counts a group's depth."""
        if name == "all":
            return 0
        parents = self._parents(name)
        return 1 + max((self._depth(p) for p in parents if p != name), default=0)

    def variables(self, host: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for name in self.groups_of(host):
            merged.update(self.groups[name].vars)
        merged.update(self.host_vars[host])
        return merged

    def select(self, patterns: Sequence[str], limit: str | None = None) -> list[str]:
        """The host names that ``patterns`` (each an Ansible pattern) and ``limit`` select, in the
        file's order; an unknown name or a selection of no hosts is an error."""
        chosen = self._evaluate(patterns)
        if limit is not None:
            chosen &= self._evaluate([limit], option="--limit ")
        if not chosen:
            shown = " ".join(patterns) + (f" --limit {limit}" if limit is not None else "")
            raise SmartbinError(f"--inventory {self.path}: {shown!r} selects no hosts")
        return [h for h in self.host_vars if h in chosen]

    def hosts(self, patterns: Sequence[str], limit: str | None = None) -> list[Host]:
        return [self.host(name) for name in self.select(patterns, limit)]

    def host(self, name: str) -> Host:
        """The :class:`~.ssh.Host` of inventory host ``name``, from its connection variables."""
        return host_from_vars(name, self.variables(name), f"--inventory {self.path}: host {name}")

    def _evaluate(self, patterns: Sequence[str], option: str = "") -> set[str]:
        # As Ansible: a list is joined with ',' (or, without one, ':'); several patterns make one list.
        terms = [
            t.strip()
            for pattern in patterns
            for t in pattern.split("," if "," in pattern else ":")
            if t.strip()
        ]
        if not terms:
            shown = " ".join(patterns)
            raise SmartbinError(f"{option or 'a pattern '}{shown!r} is empty; give a group, a host or all")
        plain = [t for t in terms if t[0] not in "!&"]
        chosen: set[str] = set()
        for term in plain or ["all"]:  # as Ansible: only '&' and '!' terms start from all
            chosen |= self._term(term, option)
        for term in terms:
            if term.startswith("&"):
                chosen &= self._term(term[1:], option)
        for term in terms:
            if term.startswith("!"):
                chosen -= self._term(term[1:], option)
        return chosen

    def _term(self, term: str, option: str) -> set[str]:
        if term in ("all", "*"):
            return set(self.host_vars)
        if term in self.groups:
            return set(self.members(term))
        if term in self.host_vars:
            return {term}
        if term.startswith("~"):
            try:
                regex = re.compile(term[1:])
            except re.error as exc:
                raise SmartbinError(f"{option}{term!r} is not a regular expression ({exc})") from None
            match = lambda name: bool(regex.match(name))  # noqa: E731 (Ansible matches from the start)
        elif any(c in term for c in "*?["):
            match = lambda name: fnmatch.fnmatchcase(name, term)  # noqa: E731
        else:
            match = None
        found: set[str] = set()
        if match is not None:
            for name in self.groups:
                if match(name):
                    found |= set(self.members(name))
            found |= {h for h in self.host_vars if match(h)}
            if found:
                return found
        raise SmartbinError(self._unknown(term, option))

    def _unknown(self, term: str, option: str) -> str:
        names = [*self.groups, *self.host_vars]
        close = difflib.get_close_matches(term, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        given = f" (in {option.strip()})" if option else ""
        groups = ", ".join(sorted(self.groups))
        return (
            f"--inventory {self.path}: no group or host {term!r}{given}{hint}; its groups: {groups} "
            f"({len(self.host_vars)} hosts)"
        )


# Connection variables -> Host ------------------------------------------------------------------


def _first(variables: dict[str, Any], names: Iterable[str]) -> tuple[str, Any] | None:
    for name in names:
        if name in variables and variables[name] is not None:
            return name, variables[name]
    return None


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SmartbinError(f"{where}: {key} should be a text, got {value!r}")
    if "{{" in value or "{%" in value:
        raise SmartbinError(
            f"{where}: {key} is a Jinja template ({value!r}); smartbin does not evaluate templates, "
            "give the value itself"
        )
    return value.strip()


def host_from_vars(name: str, variables: dict[str, Any], where: str) -> Host:
    connection = variables.get("ansible_connection")
    if connection not in (None, "ssh", "smart", "paramiko", "ansible.builtin.ssh"):
        raise SmartbinError(
            f"{where}: ansible_connection is {connection!r}; smartbin reaches bins only over ssh"
        )
    hostname = name
    if found := _first(variables, HOST_VARS):
        hostname = _text(where, *found)
        try:
            hostname = str(ipaddress.ip_address(hostname.strip("[]")))
        except ValueError:
            if not _NAME.match(hostname):
                raise SmartbinError(
                    f"{where}: {found[0]} {hostname!r} is not a host name or an IP address"
                ) from None
    port = None
    if found := _first(variables, PORT_VARS):
        key, value = found
        text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise SmartbinError(f"{where}: {key} should be a port number 1-65535, got {value!r}")
        port = int(text)
    user = None
    if found := _first(variables, USER_VARS):
        user = _text(where, *found)
        if not _USER.match(user):
            raise SmartbinError(f"{where}: {found[0]} {user!r} is not a user name")
    options: list[str] = []
    if found := _first(variables, KEY_VARS):
        key = Path(_text(where, *found)).expanduser().absolute()
        if not key.is_file():
            raise SmartbinError(f"{where}: {found[0]} {key}: no such file; give the bin's private key")
        options.append(
            f'IdentityFile="{key}"' if any(c.isspace() for c in str(key)) else f"IdentityFile={key}"
        )
    for key in ARGS_VARS:
        if variables.get(key) is not None:
            options += _ssh_args(where, key, _text(where, key, variables[key]))
    return Host(text=name, hostname=hostname, user=user, port=port, options=tuple(options))


def _ssh_args(where: str, key: str, text: str) -> list[str]:
    """The ``-o Name=value`` and ``-J jump`` options of ``ansible_ssh_*_args`` (nothing else)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SmartbinError(f"{where}: {key} cannot be split into words ({exc})") from None
    options, i = [], 0
    while i < len(words):
        word = words[i]
        if word in ("-o", "-J") and i + 1 < len(words):
            value, i = words[i + 1], i + 2
        elif word.startswith(("-o", "-J")) and len(word) > 2:
            value, i = word[2:], i + 1
        else:
            raise SmartbinError(
                f"{where}: {key}: smartbin passes on only -o Name=value and -J host options, not {word!r}"
            )
        options.append(f"ProxyJump={value}" if word.startswith("-J") else value)
    return options


# Host names: ranges and ports ------------------------------------------------------------------


def expand_host(pattern: str, where: str) -> tuple[list[str], int | None]:
    """``bin[01:03]:2222`` -> ``["bin01", "bin02", "bin03"]``, 2222 (Ansible's host ranges)."""
    port = None
    name = pattern
    if ":" in re.sub(r"\[[^\]]*\]", "", name):  # a colon outside a range: the port
        name, _, digits = name.rpartition(":")
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise SmartbinError(f"{where}: {pattern!r}: the port after ':' should be 1-65535")
        port = int(digits)
    names = _expand_ranges(name, where)
    for n in names:
        if not _NAME.match(n):
            raise SmartbinError(
                f"{where}: {n!r} is not a host name (letters, digits, '.', '_' and '-'; a range as bin[01:20])"
            )
    return names, port


def _expand_ranges(name: str, where: str) -> list[str]:
    match = _RANGE.match(name)
    if not match:
        return [name]
    head, body, tail = match["head"], match["body"], match["tail"]
    parts = body.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise SmartbinError(f"{where}: {name!r}: a range is [start:end] or [start:end:step]")
    begin, end = parts[0] or "0", parts[1]
    try:
        step = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise SmartbinError(f"{where}: {name!r}: the step of a range is a number") from None
    if step < 1:
        raise SmartbinError(f"{where}: {name!r}: the step of a range is 1 or more")
    if begin.isdigit() and end.isdigit():
        if begin.startswith("0") and len(begin) > 1 and len(begin) != len(end):
            raise SmartbinError(f"{where}: {name!r}: a zero-padded range has start and end of one width")
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        items = [str(i).zfill(width) for i in range(int(begin), int(end) + 1, step)]
    elif len(begin) == len(end) == 1 and begin in string.ascii_letters and end in string.ascii_letters:
        letters = string.ascii_letters
        items = list(letters[letters.index(begin) : letters.index(end) + 1 : step])
    else:
        raise SmartbinError(f"{where}: {name!r}: a range is of numbers ([01:20]) or of letters ([a:f])")
    if not items:
        raise SmartbinError(f"{where}: {name!r}: the range is empty (its start is after its end)")
    return [n for item in items for n in _expand_ranges(f"{head}{item}{tail}", where)]


# The two formats ---------------------------------------------------------------------------------


def load_inventory(path: Path) -> Inventory:
    """Read an inventory file, YAML or INI (by its suffix, else by its first line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SmartbinError(
            f"--inventory {path}: no such file; give an Ansible inventory (YAML or INI)"
        ) from None
    except IsADirectoryError:
        raise SmartbinError(f"--inventory {path}: a folder; give the inventory file itself") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SmartbinError(f"--inventory {path}: cannot read it ({why})") from None
    if path.suffix.lower() in _YAML_SUFFIXES or (
        path.suffix.lower() not in (".ini", ".cfg") and _looks_yaml(text)
    ):
        inventory = parse_yaml(text, path)
    else:
        inventory = parse_ini(text, path)
    return inventory.finish()


def _looks_yaml(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        return stripped == "---" or (stripped.endswith(":") and not stripped.startswith("["))
    return False


def parse_yaml(text: str, path: Path) -> Inventory:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SmartbinError(f"--inventory {path}{where}: not valid YAML ({problem})") from None
    inventory = Inventory(path)
    if data is None:
        raise SmartbinError(
            f"--inventory {path}: empty; it should start with all: (hosts:, children:, vars:)"
        )
    if not isinstance(data, dict):
        raise SmartbinError(
            f"--inventory {path}: should be a mapping of groups (all: with hosts:, children:, vars:), "
            f"got a {_kind(data)}"
        )
    for name, body in data.items():
        _yaml_group(inventory, str(name), body, f"--inventory {path}: {name}")
    return inventory


def _kind(value: Any) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _yaml_group(inventory: Inventory, name: str, body: Any, where: str) -> None:
    if not _NAME.match(name):
        raise SmartbinError(f"{where}: {name!r} is not a group name (letters, digits, '.', '_' and '-')")
    group = inventory.group(name)
    if body is None:
        return
    if not isinstance(body, dict):
        raise SmartbinError(
            f"{where}: a group should be a mapping with hosts:, children: or vars:, got a {_kind(body)}"
        )
    for key in body:
        if key not in _GROUP_KEYS:
            raise SmartbinError(
                f"{where}: unknown key {key!r}; a group has hosts:, children: and vars: (is the indentation right?)"
            )
    hosts = body.get("hosts")
    if hosts is not None:
        if not isinstance(hosts, dict):
            raise SmartbinError(
                f"{where} > hosts: should be a mapping of host names (each followed by ':'), got a {_kind(hosts)}"
            )
        for pattern, variables in hosts.items():
            here = f"{where} > hosts > {pattern}"
            if variables is None:
                variables = {}
            if not isinstance(variables, dict):
                raise SmartbinError(
                    f"{here}: a host's variables should be a mapping, got a {_kind(variables)}"
                )
            names, port = expand_host(str(pattern), here)
            extra = {"ansible_port": port} if port is not None else {}
            for host in names:
                inventory.add_host(name, host, {**{str(k): v for k, v in variables.items()}, **extra})
    variables = body.get("vars")
    if variables is not None:
        if not isinstance(variables, dict):
            raise SmartbinError(
                f"{where} > vars: should be a mapping of names to values, got a {_kind(variables)}"
            )
        group.vars.update({str(k): v for k, v in variables.items()})
    children = body.get("children")
    if children is not None:
        if not isinstance(children, dict):
            raise SmartbinError(
                f"{where} > children: should be a mapping of group names (each followed by ':'), got a {_kind(children)}"
            )
        for child, child_body in children.items():
            inventory.add_child(name, str(child), f"{where} > children")
            _yaml_group(inventory, str(child), child_body, f"{where} > children > {child}")


def parse_ini(text: str, path: Path) -> Inventory:
    inventory = Inventory(path)
    group, kind = "ungrouped", "hosts"
    defined: set[str] = set()  # groups with hosts or children: a [g:vars] needs one
    vars_lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path} line {number}"
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = _INI_SECTION.match(line)
            if not match:
                raise SmartbinError(
                    f"--inventory {where}: {line!r} is not a section ([group], [group:vars], [group:children])"
                )
            group, kind = match["group"], match["kind"] or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise SmartbinError(
                    f"--inventory {where}: [{group}:{kind}]: a section is [group], [group:vars] or [group:children]"
                )
            if not _NAME.match(group):
                raise SmartbinError(f"--inventory {where}: {group!r} is not a group name")
            inventory.group(group)
            if kind == "vars":
                vars_lines.setdefault(group, number)
            else:
                defined.add(group)
            continue
        if kind == "hosts":
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                raise SmartbinError(
                    f"--inventory {where}: cannot split {line!r} into words ({exc})"
                ) from None
            names, port = expand_host(words[0], f"--inventory {where}")
            variables: dict[str, Any] = {}
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if not sep or not key:
                    raise SmartbinError(
                        f"--inventory {where}: expected key=value after the host name, got {word!r}"
                    )
                variables[key] = _ini_value(value)
            if port is not None:
                variables["ansible_port"] = port
            for host in names:
                inventory.add_host(group, host, variables)
        elif kind == "children":
            child = line.split("#")[0].strip()
            if not _NAME.match(child):
                raise SmartbinError(f"--inventory {where}: {child!r} is not a group name")
            inventory.add_child(group, child, f"--inventory {where}")
            defined.add(child)
        else:
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise SmartbinError(
                    f"--inventory {where}: expected key=value in [{group}:vars], got {line!r}"
                )
            inventory.group(group).vars[key.strip()] = value.strip()  # Ansible: :vars values stay text
    for group, number in vars_lines.items():
        if group not in defined and group != "all":
            raise SmartbinError(
                f"--inventory {path} line {number}: [{group}:vars] for a group that no [{group}] or "
                "[...:children] section defines"
            )
    return inventory


def _ini_value(text: str) -> Any:
    """An inline host variable: a Python literal where it is one (2222, True), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
