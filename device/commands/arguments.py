"""argparse types shared by every area's sub-commands: a bad number is refused as an argument,
in one line, before any work (never blamed on a model or a file later)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def accuracy_points(text: str) -> float:
    """Percentage points of accuracy a check allows to be lost: 0 to 100 (NaN would pass every check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected points from 0 to 100, got {text}")
    return value


def given_path(text: str) -> Path:
    """A file or folder name; an empty one (``--images ""``) is refused, not taken as the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return Path(text)


def positive_int(text: str) -> int:
    """A whole number of 1 or more (threads, images, epochs)."""
    return _int_at_least(text, 1)


def thread_count(text: str) -> int:
    """Interpreter threads: 1-64, as ``classifier.threads`` in the config."""
    value = _int_at_least(text, 1)
    if value > 64:
        raise argparse.ArgumentTypeError(f"expected a thread count 1-64, got {value}")
    return value


def event_count(text: str) -> int:
    """How many events to show: 0 or more, and no more than SQLite's integers hold."""
    return _count_below_2_63(text, 0)


def repeat_count(text: str) -> int:
    """How many times to go over something: 1 or more, and below 2**63 (what a loop can count)."""
    return _count_below_2_63(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number of 0 or more (counts where 0 means none)."""
    return _int_at_least(text, 0)


def _count_below_2_63(text: str, smallest: int) -> int:
    value = _int_at_least(text, smallest)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"expected a count below 2**63, got {value}")
    return value


def _int_at_least(text: str, smallest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < smallest:
        raise argparse.ArgumentTypeError(f"must be {smallest} or more, got {value}")
    return value


def host_port(text: str) -> str:
    """``HOST:PORT`` to listen on (``[::1]:8080`` for IPv6; port 0: any free port)."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    unbalanced = ("[" in host or "]" in host) and not bracketed
    if not sep or not host.strip("[]") or unbalanced or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return text


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rates, widths)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` of the bin's commands."""
    parser.add_argument(
        "--config",
        type=given_path,
        metavar="FILE",
        help="config file (default: $SMARTBIN_CONFIG, else /etc/smartbin/config.toml if it exists, else built-in defaults)",
    )


def load_config_of(args: argparse.Namespace) -> Any:
    """The config ``--config`` names, else the default one (see ``add_config_option``)."""
    from ..config import default_config_path, load_config

    return load_config(args.config if args.config is not None else default_config_path())
