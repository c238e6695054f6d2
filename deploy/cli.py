"""Sub-commands of this area (see smartbin.device.cli)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the ``smartbin`` parser."""
