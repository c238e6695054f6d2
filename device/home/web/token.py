"""The token that lets a person relabel items on the review page (``Authorization: Bearer``)."""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from ...config import Config
from ...errors import SmartbinError, os_error_reason
from ...files import is_special_file

TOKEN_BYTES = 24  # 32 URL-safe characters
MAX_TOKEN_FILE = 4096  # bytes read of a token file: a token and some white space


def token_path(config: Config) -> Path:
    """``web.token_file``, else ``<state_dir>/web-token``."""
    return config.web.token_file or config.paths.state_dir / "web-token"


def current_token_file(paths: Sequence[Path]) -> Path:
    """The first of ``paths`` this process can read, else the last (whose problem a write is told).

    One path for a bin; a simulation's page names the bin's token file before its own, so a token
    made with ``smartbin web token`` while it runs counts at once.
    """
    return next((p for p in paths if p.is_file() and os.access(p, os.R_OK)), paths[-1])


def create_token(path: Path, *, force: bool = False) -> str:
    """Write a new random token to ``path`` with mode 0600 and return it.

    Refuses to replace an existing file unless ``force`` (pages that kept the old one must then
    be given the new one).
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    if path.is_dir():
        raise SmartbinError(f"{path}: is a directory; give web.token_file a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o600)
    except FileExistsError as exc:
        if exc.filename != str(path) or not path.is_file():  # a file where a folder must be
            raise SmartbinError(f"cannot write the token file {path}: {exc.filename} is a file") from None
        raise SmartbinError(
            f"{path} exists; --force replaces it (pages that kept the old token then ask again, and "
            "browsers signed in with a link are signed out)"
        ) from None
    except OSError as exc:
        raise SmartbinError(f"cannot write the token file {path}: {os_error_reason(exc)}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file replaced with --force keeps no wider mode
        f.write(token + "\n")
    return token


def read_token(path: Path) -> str:
    """The token in ``path``; :class:`SmartbinError` saying why there is none."""
    try:
        if is_special_file(path):  # a pipe would wait, /dev/zero would fill the memory
            raise SmartbinError(
                f"the token file {path} is not a regular file; 'smartbin web token' writes one"
            )
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        token = data.decode("ascii").strip()
    except FileNotFoundError:
        raise SmartbinError(f"no token file {path}; create one with 'smartbin web token'") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = os_error_reason(exc) if isinstance(exc, OSError) else "not a token (not ASCII)"
        raise SmartbinError(f"cannot read the token file {path}: {why}") from None
    if len(data) > MAX_TOKEN_FILE:
        raise SmartbinError(
            f"the token file {path} holds more than a token; 'smartbin web token --force' writes one"
        )
    if len(token) < 16:
        raise SmartbinError(f"the token file {path} holds no token; 'smartbin web token --force' writes one")
    if mode & 0o077:  # as OpenSSH treats a private key others can read: refused, not used
        raise SmartbinError(
            f"permissions {mode:04o} for the token file {path} are too open (other users can read or change "
            f"it), so it is not used; chmod 600 {path}"
        )
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
