"""``smartbin web token`` and ``smartbin web link``: relabelling on the review page, by the token
or by a one-time sign-in link (device/home/web/signin.py).

Only argparse and the standard library at module level.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from .arguments import add_config_option, load_config_of


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``smartbin web ...`` to the ``smartbin`` parser."""
    p = subparsers.add_parser("web", help="the review page's chores")
    sub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    t = sub.add_parser(
        "token",
        help="create the token that relabelling on the review page needs (web.token_file, mode 0600)",
        description="Write a new random token to web.token_file (default <state_dir>/web-token) with mode "
        "0600 and print it; the page asks for it once ('smartbin web link' signs a phone in without it). Run "
        "it as the daemon's user, who must read the file. The daemon reads the file at each relabel, so no "
        "restart is needed.",
    )
    add_config_option(t)
    t.add_argument(
        "--force",
        action="store_true",
        help="replace an existing token: pages that kept it ask again, and every browser signed in with a "
        "link is signed out",
    )
    t.set_defaults(func=cmd_web_token, left_on_interrupt="the token file was not changed")
    k = sub.add_parser(
        "link",
        help="print a one-time sign-in link for a phone, with its QR code (valid 10 minutes)",
        description="Print http://HOST:PORT/signin#CODE for the page on [web] listen (and its QR code on a "
        "terminal). Opened once within 10 minutes, it keeps that browser signed in (a cookie) until the "
        "token changes; a newer link replaces an unused one. The code is in the part after '#', which "
        "browsers never send, so no log holds it. Makes the token first if there is none; run it as "
        "the daemon's user.",
    )
    add_config_option(k)
    k.set_defaults(func=cmd_web_link, left_on_interrupt="no link was made, or an unused one is replaced")


def cmd_web_token(args: argparse.Namespace) -> int:
    from ..home.web.token import create_token, token_path

    path = token_path(load_config_of(args))
    token = create_token(path, force=args.force)
    print(token)
    print(
        f"written to {path}; give it to the review page when it asks, or sign a phone in with "
        "'smartbin web link'",
        file=sys.stderr,
    )
    return 0


def cmd_web_link(args: argparse.Namespace) -> int:
    from ..errors import SmartbinError
    from ..home.web.signin import make_link
    from ..home.web.token import create_token, read_token, token_path

    config = load_config_of(args)
    if config.web.address is None:
        raise SmartbinError(
            'the review page is off ([web] listen is empty); set it, e.g. listen = "0.0.0.0:8080", '
            "and restart the bin"
        )
    path = token_path(config)
    if path.exists() or path.is_symlink():
        read_token(path)  # a token the page refuses would make a link that cannot sign in
    else:
        create_token(path)
        print(f"no token yet: wrote a new one to {path}", file=sys.stderr)
    show_link(make_link(path, *config.web.address), sys.stdout)
    return 0


def show_link(link: Any, out: TextIO) -> None:
    """The link (a :class:`~smartbin.device.home.web.signin.Link`) alone on a line, its QR code when
    ``out`` is a terminal, and how long it lasts."""
    print(link.url, file=out)
    if out.isatty():
        import segno  # pure Python; only for this

        segno.make(link.url, error="l").terminal(out=out, compact=True)
    until = time.strftime("%H:%M", time.localtime(link.expires))
    print(f"signs one browser in, once, until {until}; a newer link replaces it", file=out)
    if link.note:
        print(f"note: {link.note}", file=out)
