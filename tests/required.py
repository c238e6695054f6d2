"""Tests that need a real service or tool from Debian (sshd, Mosquitto, nginx, Chromium,
systemd-analyze) skip where it is missing, except in CI, where ``.ci/run`` sets
``SMARTBIN_REQUIRE_<NAME>=1`` and a missing tool fails the test instead."""

from __future__ import annotations

import os

import pytest


def missing(why: str, require: str) -> None:
    """Skip with ``why``, or fail with it when ``SMARTBIN_REQUIRE_<require>=1``."""
    if os.environ.get(f"SMARTBIN_REQUIRE_{require}") == "1":
        pytest.fail(f"{why}, but SMARTBIN_REQUIRE_{require}=1")
    pytest.skip(why)
