"""Signing a browser in with a one-time link instead of typing the token (``smartbin web link``).

``smartbin web link`` writes a random code's SHA-256 and its expiry to ``<token_file>.signin``
(mode 0600; a newer link replaces an unused one) and prints ``http://HOST:PORT/signin#CODE``. The
code is in the fragment, which a browser never sends: no request line, access log or proxy sees
it. The page's script posts it to ``/api/signin``, which takes it once before it expires and sets
a cookie holding an expiry and an HMAC of the token, so a new token (``smartbin web token --force``)
signs every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import SmartbinError, os_error_reason
from ...files import is_special_file

CODE_BYTES = 16  # 22 URL-safe characters
CODE_LIFE_S = 600
SESSION_LIFE_S = 400 * 86400  # the longest Max-Age browsers keep (Chrome caps cookies at 400 days)
COOKIE = "smartbin-session"
MAX_CODE_FILE = 1024

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>smartbin: signing in</title><link rel="stylesheet" href="/static/style.css">
<script src="/signin.js" defer></script></head>
<body><main><p id="message" role="status">Signing in\xe2\x80\xa6</p></main></body></html>
"""

SCRIPT = b"""// Posts the link's code (the fragment, never sent by the browser) once, then opens the page.
"use strict";
const code = location.hash.slice(1);
history.replaceState(null, "", "/signin");  // the code leaves the address bar and the history
const say = (text) => { document.getElementById("message").textContent = text; };
if (!code) say("This link holds no code: run 'smartbin web link' for a new one.");
else fetch("/api/signin", {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
}).then(async (response) => {
  if (response.ok) location.replace("/");
  else say((await response.json()).error);
}).catch((error) => say("the bin does not answer: " + error.message));
"""


class SignInRefused(Exception):
    """A code that signs nobody in; the message says why and what to do."""


def code_path(token_file: Path) -> Path:
    """Where the pending sign-in code lives: beside the token it signs in with."""
    return token_file.with_name(token_file.name + ".signin")


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def create_code(token_file: Path, life_s: float = CODE_LIFE_S) -> tuple[str, float]:
    """Write a new code's hash and expiry beside ``token_file`` (mode 0600, replacing an unused
    one); return (the code, its expiry as a Unix time)."""
    code = secrets.token_urlsafe(CODE_BYTES)
    expires = time.time() + life_s
    path = code_path(token_file)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            json.dump({"sha256": _digest(code), "expires": expires}, f)
        os.replace(temporary, path)  # whole or not at all, for a page reading it now
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SmartbinError(f"cannot write the sign-in code {path}: {os_error_reason(exc)}") from None
    return code, expires


class SignIns:
    """Takes each code once: under a lock within this process, and by removing its file for others
    (a simulation and the bin that share a token file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[str] = set()

    def redeem(self, token_file: Path, code: str) -> None:
        """Take ``code`` or raise :class:`SignInRefused` saying why."""
        again = "'smartbin web link' makes a new one"
        invalid = SignInRefused(
            f"this sign-in link is not valid (used already, replaced by a newer one, or cut short); {again}"
        )
        path = code_path(token_file)
        digest = _digest(code)
        with self._lock:
            pending = _read_code_file(path)
            if pending is None or digest in self._used or not hmac.compare_digest(pending[0], digest):
                raise invalid
            if pending[1] < time.time():
                raise SignInRefused(
                    f"this sign-in link expired at {time.strftime('%H:%M', time.localtime(pending[1]))}; {again}"
                )
            self._used.add(digest)
            try:
                path.unlink()
            except FileNotFoundError:  # another process took it first
                raise invalid from None
            except OSError:
                pass  # a folder the page cannot write: the code is still used up here


def _read_code_file(path: Path) -> tuple[str, float] | None:
    """(hash, expiry) of the pending code, or None when there is none or it is not one."""
    try:
        if is_special_file(path):
            return None
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_CODE_FILE))
        return str(data["sha256"]), float(data["expires"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def session_value(token: str, expires: int) -> str:
    """The cookie: its expiry and an HMAC of it keyed with the token."""
    mac = hmac.new(token.encode(), f"session {expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def new_session(token: str) -> str:
    return session_value(token, int(time.time()) + SESSION_LIFE_S)


def session_valid(value: str | None, token: str) -> bool:
    """Whether a cookie was made with ``token`` and has not expired (compared in constant time)."""
    expires, _, _ = (value or "").partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or int(expires) < time.time():
        return False
    return hmac.compare_digest(value.encode(), session_value(token, int(expires)).encode())


def lan_address() -> str | None:
    """This machine's address on its LAN, found without sending a packet: the source address a UDP
    socket "connected" to a private address would use. None without such a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith(("127.", "0.")) else address


def link_url(host: str, port: int, code: str) -> tuple[str, str | None]:
    """The sign-in link for a page listening on ``host``:``port``, and a note when its host is a guess
    the user must replace (a page on every address of a machine with no LAN route)."""
    note = None
    if host in ("", "0.0.0.0", "::"):
        host = lan_address() or "HOST"
        if host == "HOST":
            note = "replace HOST with the bin's address on your network"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/signin#{code}", note


@dataclass(frozen=True)
class Link:
    url: str
    expires: float  # Unix time
    note: str | None  # what the user must do to the URL first, if anything


def make_link(token_file: Path, host: str, port: int) -> Link:
    """A new one-time sign-in link for the page on ``host``:``port`` that checks ``token_file``."""
    code, expires = create_code(token_file)
    url, note = link_url(host, port, code)
    return Link(url, expires, note)
