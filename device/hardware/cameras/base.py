"""The one interface every camera answers: open, capture an RGB frame, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import numpy as np


def one_line(exc: BaseException) -> str:
    """An exception as one line for a :class:`CameraError` (native libraries write several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class Camera(ABC):
    """A source of RGB frames (``uint8``, height x width x 3).

    ``capture()`` raises :class:`~smartbin.device.errors.CameraError` with one line when no
    frame can be had; the daemon then calls ``reopen()`` and tries again.
    """

    #: A short description for logs, such as ``opencv:0`` or ``folder:/srv/photos``.
    name: str = "camera"
    #: Whether a frame shows the chamber as it is now, so that one taken between items costs
    #: nothing (the idle refresh of the empty reference); a folder camera's next frame is the next item.
    live: bool = True

    @abstractmethod
    def open(self) -> None:
        """Acquire the device and start delivering frames."""

    @abstractmethod
    def capture(self) -> np.ndarray:
        """Return the next frame as an RGB ``uint8`` array of shape (H, W, 3)."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call twice, or on a camera that never opened."""

    def reopen(self) -> None:
        """Close and open again: the way back after a failed capture."""
        self.close()
        self.open()

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
