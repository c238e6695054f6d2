"""A USB camera or a video file through OpenCV's ``VideoCapture``."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ...errors import CameraError
from .base import Camera

log = logging.getLogger(__name__)


def parse_source(source: str | int | None) -> int | str:
    """A device index (``0``, ``"1"``) stays an int; anything else is a path or URL."""
    if source is None:
        return 0
    if isinstance(source, int):
        return source
    return int(source) if source.strip().isdigit() else source


class OpenCVCamera(Camera):
    """Frames from ``cv2.VideoCapture``, converted from OpenCV's BGR to RGB.

    For a device (an index or ``/dev/videoN``) the capture asks for ``width`` x ``height`` and
    a one-frame driver buffer, and drops the buffered frame before each read so that a frame
    taken when the lid closes is not one that waited in the driver since the last item. A video
    file is read frame by frame; its end is a :class:`CameraError`.
    """

    def __init__(self, source: str | int | None = 0, *, width: int, height: int) -> None:
        self.source = parse_source(source)
        self.width = width
        self.height = height
        self.is_file = False
        self.name = f"opencv:{self.source}"
        self.frames = 0
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self._cap is not None:
            return
        self.is_file = isinstance(self.source, str) and Path(self.source).is_file()
        if (
            isinstance(self.source, str)
            and not self.is_file
            and not self.source.startswith(("/dev/", "rtsp:", "http"))
        ):
            raise CameraError(
                f"video source {self.source} does not exist; give a camera index, /dev/videoN or a video file"
            )
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            if self.is_file:
                raise CameraError(
                    f"cannot open video file {self.source}: OpenCV cannot read it as a video; "
                    "give a video file, a camera index or /dev/videoN"
                )
            raise CameraError(
                f"cannot open camera {self.source}; check that it is connected and readable (group 'video')"
            )
        if not self.is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if got != (self.width, self.height):
                log.info("%s delivers %dx%d (asked for %dx%d)", self.name, *got, self.width, self.height)
        self._cap = cap
        self.frames = 0

    def capture(self) -> np.ndarray:
        if self._cap is None:
            raise CameraError(f"camera {self.name} is not open")
        if not self.is_file:
            self._cap.grab()  # drop the frame that sat in the driver's buffer
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.is_file:
                raise CameraError(f"video file {self.source} ended after {self.frames} frames")
            raise CameraError(f"camera {self.source} returned no frame; is it still connected?")
        self.frames += 1
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
