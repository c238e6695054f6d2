"""The ``smartbin`` command.

Each area registers its own sub-commands; a registering module only builds argparse parsers
and imports its heavy dependencies (TensorFlow, SSH helpers) inside the handlers, so the
command starts fast on a Pi and ``smartbin run`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .errors import SmartbinError

COMMAND_MODULES = (
    "smartbin.device.commands",
    "smartbin.training.cli",
    "smartbin.converters.cli",
    "smartbin.deploy.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartbin",
        description="Camera-equipped recycling bin: classify items and sort them with servos.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (INFO -> DEBUG)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except SmartbinError as exc:
        if args.debug:
            raise
        print(f"smartbin: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
