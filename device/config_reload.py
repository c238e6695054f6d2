"""What a reload (``SIGHUP``) does with the config file: read it again, refuse it whole if it is
invalid, apply the sections that can change between items, and name the ones that wait for a
restart (pins, camera, paths and the observers are set up once, at start)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import Config, file_keys, load_config
from .records.state import now_iso

LIVE_SECTIONS = ("sorting", "classifier")


def reread(config: Config) -> tuple[Config, list[str]]:
    """The running config with its file's new ``[sorting]`` and ``[classifier]``, and the other
    sections that changed there (they wait for a restart). ConfigError: the file is invalid now;
    the running config stays."""
    if config.source is None:  # the built-in defaults: nothing to read again
        return config, []
    new = load_config(config.source)
    changed = [name for name in file_keys(Config) if getattr(new, name) != getattr(config, name)]
    live = {name: getattr(new, name) for name in changed if name in LIVE_SECTIONS}
    waiting = [name for name in changed if name not in live]
    try:
        return dataclasses.replace(config, **live), waiting
    except ValueError:  # e.g. [sorting] names a compartment that comes with the new [compartments]
        return config, changed


def outcome(model_version: str | None, error: str | None, waiting: list[str]) -> dict[str, Any]:
    """The last reload as status.json's ``last_reload`` keeps it."""
    return {
        "at": now_iso(),
        "ok": error is None,
        "model_version": model_version,
        "error": error,
        "restart_needed": waiting,
    }


def warnings(last_reload: dict[str, Any] | None) -> list[str]:
    """What the last reload left wrong: it failed, or changes wait for a restart."""
    if last_reload and not last_reload["ok"]:
        return [
            f"last reload failed at {last_reload['at']}: {last_reload['error']}; "
            f"still running model {last_reload['model_version']}"
        ]
    if last_reload and last_reload["restart_needed"]:
        return [
            f"config changes to [{'], ['.join(last_reload['restart_needed'])}] wait for a restart "
            "(systemctl restart smartbin)"
        ]
    return []
