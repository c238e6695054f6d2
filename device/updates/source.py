"""What an update source offers a bin, and how it says no."""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Offer:
    """A bundle a channel offers this bin: its version as its manifest names it, and the
    repository's target (path, length, SHA-256) that holds it."""

    channel: str
    version: str
    target: str
    length: int
    sha256: str


class UpdateError(Exception):
    """An update that did not happen, in one line.

    ``refused``: what the repository served failed verification (a signature, a hash, expired or
    replayed metadata), so the same version is never tried again. Otherwise the failure is
    passing (no network, a server error) and the next scheduled check tries again.
    """

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class UpdateSource(Protocol):
    def offer(self) -> Offer | None:
        """Refresh the signed metadata and say what the channel offers this bin now; None when it
        offers nothing (an empty channel, or a rollout that has not reached this bin yet)."""
        ...

    def fetch(self, offer: Offer) -> Path:
        """Download (resuming a partial one), verify and unpack ``offer``'s bundle; return the
        bundle's directory. Raises UpdateError."""
        ...
