"""``smartbin web token``: the token that lets a person relabel items on the review page.

Only argparse and the standard library at module level.
"""

from __future__ import annotations

import argparse
import sys

from .bin import _add_config, _load


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``smartbin web ...`` to the ``smartbin`` parser."""
    p = subparsers.add_parser("web", help="the review page's chores")
    sub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    t = sub.add_parser(
        "token",
        help="create the token that relabelling on the review page needs (web.token_file, mode 0600)",
        description="Write a new random token to web.token_file (default <state_dir>/web-token) with mode "
        "0600 and print it; the page asks for it once. Run it as the daemon's user, who must read the file. "
        "The daemon reads the file at each relabel, so no restart is needed.",
    )
    _add_config(t)
    t.add_argument(
        "--force", action="store_true", help="replace an existing token (pages that kept it ask again)"
    )
    t.set_defaults(func=cmd_web_token, left_on_interrupt="the token file was not changed")


def cmd_web_token(args: argparse.Namespace) -> int:
    from ..home.web.token import create_token, token_path

    path = token_path(_load(args))
    token = create_token(path, force=args.force)
    print(token)
    print(f"written to {path}; give it to the review page when it asks", file=sys.stderr)
    return 0
