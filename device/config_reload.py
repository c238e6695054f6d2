"""What a reload (``SIGHUP``) does with the config file: read it again, refuse it whole if it is
invalid, apply the sections that can change between items, and name the ones that wait for a
restart (pins, camera, paths and the observers are set up once, at start)."""

from __future__ import annotations

import dataclasses

from .config import Config, file_keys, load_config

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
