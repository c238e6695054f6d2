"""The house's rule (docs/architecture.md): imports inside ``device`` run one way, from the
commands down to the config, and none climbs back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DEVICE = Path(__file__).resolve().parents[2] / "device"
WINGS = ("commands", "home", "updates", "hardware", "vision", "records")

# Higher floors may import lower ones (and their own), never the reverse.
FLOORS = {
    "cli": 7,
    "commands": 7,
    "daemon": 6,
    "config_reload": 6,
    "home": 5,
    "decision": 4,
    "updates": 4,
    "thresholds": 4,
    "hardware": 3,
    "vision": 2,
    "records": 1,
    # the ground floor: what every wing may use
    "config": 0,
    "schema": 0,
    "errors": 0,
    "files": 0,
    "interrupts": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(DEVICE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "settings":  # each wing's config tables belong to the config on the ground floor
        return 0
    return FLOORS[parts[0]] if parts[0] else 0


def device_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module under device) for every import of ``path`` inside device, lazy ones too."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            targets = (
                [".".join([*base, node.module])]
                if node.module
                else [".".join([*base, a.name]) for a in node.names]
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smartbin.device."):
            targets = [node.module.removeprefix("smartbin.device.")]
        else:
            continue
        found += [(node.lineno, t.strip(".")) for t in targets]
    return found


MODULES = sorted(p for p in DEVICE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(DEVICE)))
def test_imports_never_climb_up(path):
    own = floor(module_name(path))
    upward = [
        f"{path.relative_to(DEVICE)}:{line} imports {target}"
        for line, target in device_imports(path)
        if floor(target) > own
    ]
    assert not upward


def test_every_module_has_a_floor():
    assert {module_name(p).split(".")[0] for p in MODULES} - {""} <= set(FLOORS)


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_says_what_lives_there_and_what_it_may_import(wing):
    doc = ast.get_docstring(ast.parse((DEVICE / wing / "__init__.py").read_text()))
    assert doc and "import" in doc
