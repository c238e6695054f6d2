"""The fault-injection suite: bad input, faults and misuse, each ending in correct behaviour or
one line on stderr with a non-zero exit.

:func:`run_smartbin` runs the real ``smartbin`` command in a subprocess (as a user would) and fails
the test if it prints a Python traceback; :func:`assert_one_line_error` checks the error shape.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"


def run_smartbin(
    *args: str | os.PathLike,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``smartbin ARGS...`` in a subprocess; a traceback on stderr fails the calling test."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "smartbin.device.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input,
        cwd=cwd,
    )
    assert "Traceback (most recent call last)" not in result.stderr, (
        f"smartbin {' '.join(map(str, args))} printed a traceback:\n{result.stderr}"
    )
    return result


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``smartbin: error:`` lines of a run's stderr (log lines are not errors)."""
    return [line for line in result.stderr.splitlines() if line.startswith("smartbin: error:")]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A non-zero exit with exactly one ``smartbin: error:`` line containing every fragment."""
    assert result.returncode != 0, f"expected a failure, got rc 0:\n{result.stdout}\n{result.stderr}"
    lines = error_lines(result)
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "array(" not in lines[0] and "np." not in lines[0], f"a numpy repr in {lines[0]!r}"
    return lines[0]


@contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs at ``where`` with mount ``options`` (e.g. ``ro,size=64k``): a small or read-only
    file system that stops root too. Skips the test where this user may not mount."""
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
