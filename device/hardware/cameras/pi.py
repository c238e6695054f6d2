"""The Raspberry Pi camera through picamera2 (libcamera).

picamera2 comes from apt on Raspberry Pi OS and is imported only when this camera opens, so
the rest of smartbin runs without it. The camera is configured once for a video stream that
keeps running; each capture takes the next frame from it, which costs one frame period
instead of the 0.5-0.7 s of switching to a still mode per item.

Colour order: picamera2 names formats after libcamera, whose ``BGR888`` arrives in numpy as
R, G, B per pixel (and ``RGB888`` as B, G, R). Asking for ``BGR888`` therefore gives RGB
frames with no conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import CameraError
from .base import Camera, one_line

log = logging.getLogger(__name__)

#: libcamera's name for the format that numpy sees as R, G, B.
FORMAT = "BGR888"

NOT_INSTALLED = (
    "picamera2 not found; on Raspberry Pi OS: sudo apt install python3-picamera2 "
    "and create the venv with --system-site-packages"
)
BROKEN = (
    "picamera2 is installed but fails to import ({}); if numpy is named, the venv has a numpy "
    "other than the one Raspberry Pi OS built picamera2's modules for: pip install 'numpy<2' on Bookworm"
)


class Picamera2Camera(Camera):
    """A Pi camera (``camera_num`` as in ``rpicam-hello --list-cameras``) streaming ``width`` x ``height``.

    ``controls`` are libcamera controls fixed for the whole stream, for example a fixed focus
    and exposure for a bin whose drop zone is always at the same distance and lighting:
    ``{"AfMode": 0, "LensPosition": 4.0, "ExposureTime": 8000, "AnalogueGain": 2.0}``
    (``LensPosition`` is in dioptres, 1 / distance in metres; ``AfMode`` 0 is manual).
    """

    def __init__(
        self, camera_num: int = 0, *, width: int, height: int, controls: Mapping[str, Any] | None = None
    ) -> None:
        self.camera_num = camera_num
        self.width = width
        self.height = height
        self.controls = dict(controls or {})
        self.name = f"picamera2:{camera_num}"
        self._cam: Any = None

    def open(self) -> None:
        if self._cam is not None:
            return
        try:
            from picamera2 import Picamera2
        except ModuleNotFoundError as exc:
            if exc.name != "picamera2":
                raise CameraError(BROKEN.format(one_line(exc))) from exc
            raise CameraError(NOT_INSTALLED) from exc
        except Exception as exc:  # e.g. apt's C extensions against a newer numpy from pip
            raise CameraError(BROKEN.format(one_line(exc))) from exc
        cam = None
        try:
            cam = Picamera2(self.camera_num)
            # queue=False: a capture waits for a frame exposed after the request, not one
            # that sat in the queue since before the item landed.
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": FORMAT},
                controls=self.controls,
                queue=False,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            if cam is not None:
                _quietly_close(cam)
            raise CameraError(
                f"cannot open Pi camera {self.camera_num}: {one_line(exc)}; check the ribbon cable and `rpicam-hello --list-cameras`"
            ) from exc
        self._cam = cam

    def capture(self) -> np.ndarray:
        if self._cam is None:
            raise CameraError(f"camera {self.name} is not open")
        try:
            frame = self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"Pi camera {self.camera_num} gave no frame: {one_line(exc)}") from exc
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise CameraError(
                f"Pi camera {self.camera_num} gave a {frame.dtype} frame of shape {frame.shape}, expected HxWx3 uint8"
            )
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _quietly_close(cam)


def _quietly_close(cam: Any) -> None:
    """Stop and close, logging (not raising) failures: closing runs on the way out of errors."""
    for step in (cam.stop, cam.close):
        try:
            step()
        except Exception as exc:
            log.warning("closing the Pi camera: %s failed: %s", step.__name__, exc)
