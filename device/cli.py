"""The ``smartbin`` command.

Each area registers its own sub-commands; a registering module only builds argparse parsers
and imports its heavy dependencies (TensorFlow, SSH helpers) inside the handlers, so the
command starts fast on a Pi and ``smartbin run`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from . import interrupts
from .errors import SmartbinError, Terminated, os_error_message
from .vision.native import python_stderr, quiet_native_logs, show_native_output

COMMAND_MODULES = (
    "smartbin.device.commands.bin",
    "smartbin.device.commands.mqtt",
    "smartbin.device.commands.chamber",
    "smartbin.device.commands.web",
    "smartbin.training.cli",
    "smartbin.converters.cli",
    "smartbin.deploy.cli",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with smartbin's one-line errors (the usage stays in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("smartbin").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"smartbin: error: {where}{message}; see '{self.prog} --help'\n")


@contextmanager
def _noted_interrupts() -> Iterator[None]:
    """While a command runs, Ctrl-C raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated`, and
    both are noted so that one swallowed by a callback is raised again (:mod:`.interrupts`).

    Python's "Exception ignored" report of a swallowed one is left out, and an error an interrupt
    caused on its way through native code (TensorFlow's can turn it into a ``SystemError``) is
    taken for that interrupt. ``run`` installs its own handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> NoReturn:
        interrupts.note(signum)
        interrupts.raise_for(signum)

    def unraisable(info: object) -> None:
        if not isinstance(getattr(info, "exc_value", None), KeyboardInterrupt):
            previous_hook(info)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    except Exception:
        interrupts.raise_if_noted()
        raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        sys.unraisablehook = previous_hook
        interrupts.forget()


def _left_as_it_was(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind: its ``left_on_interrupt`` default, else a plain word."""
    left = getattr(args, "left_on_interrupt", None)
    if callable(left):
        return left(args)
    if left:
        return left.format(**vars(args))
    return "stopped where it was"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    show_native_output(args.verbose or args.debug)
    quiet_native_logs()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=python_stderr,  # log lines from other threads survive a decode's silenced fd 2
    )
    if not args.verbose:  # "generated new fontManager" on a first plot says nothing to a user
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        with _noted_interrupts():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a reader that left (`smartbin events | head`) shows here, not at exit
            return code
    except BrokenPipeError:  # nobody reads the rest: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SmartbinError as exc:
        if args.debug:
            raise
        print(f"smartbin: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        if args.debug:
            raise
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"smartbin: {how}; {_left_as_it_was(args)}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except OSError as exc:  # a file-system mistake no handler foresaw: still one line
        if args.debug:
            raise
        print(f"smartbin: error: {os_error_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
