"""Cameras behind one small interface: ``open()``, ``capture() -> RGB uint8 HxWx3``, ``close()``.

``create_camera(kind, ...)`` builds the one the configuration names. picamera2 is imported
only when a ``picamera2`` camera opens.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import CameraError, ConfigError
from ...files import DATA_DIR
from ...vision.images import read_rgb
from ..settings import CAMERA_KINDS, CameraConfig
from .base import Camera
from .folder import FolderCamera, list_images
from .opencv import OpenCVCamera
from .pi import Picamera2Camera

__all__ = [
    "CAMERA_KINDS",
    "SAMPLES_DIR",
    "Camera",
    "FolderCamera",
    "OpenCVCamera",
    "Picamera2Camera",
    "create_camera",
    "list_images",
    "read_rgb",
]

#: The sample photos shipped with smartbin: what a folder camera shows when given no source.
SAMPLES_DIR = DATA_DIR / "samples"


def create_camera(
    kind: str,
    *,
    width: int,
    height: int,
    source: str | int | None = None,
    frames_per_image: int = 1,
    controls: Mapping[str, Any] | None = None,
) -> Camera:
    """The camera of ``kind``, not yet opened.

    ``source`` means: for ``picamera2`` the camera number (default 0); for ``opencv`` a device
    index, ``/dev/videoN`` or a video file (default 0); for ``folder`` a folder of images or
    one image file (default: the bundled sample photos). ``width`` and ``height`` are the
    resolution asked of a real camera; a folder camera returns photos at their own size.
    ``frames_per_image`` applies to the folder camera only, ``controls`` (libcamera controls
    such as a fixed focus and exposure) to ``picamera2`` only.
    """
    if kind not in CAMERA_KINDS:
        raise ConfigError(f"unknown camera kind {kind!r}; use one of: {', '.join(CAMERA_KINDS)}")
    if controls and kind != "picamera2":
        raise ConfigError(f"camera controls apply to the picamera2 camera only, not to {kind!r}")
    if kind == "picamera2":
        if isinstance(source, str) and not source.strip().isdigit():
            raise ConfigError(f"picamera2 camera source must be a camera number such as 0, got {source!r}")
        return Picamera2Camera(int(source or 0), width=width, height=height, controls=controls)
    if kind == "opencv":
        return OpenCVCamera(source, width=width, height=height)
    return FolderCamera(
        SAMPLES_DIR if source is None else Path(str(source)), frames_per_image=frames_per_image
    )


def check_source(camera: CameraConfig, where: str) -> list[str]:
    """What only the file system can tell about ``[camera] source``, for ``smartbin config check``:
    raises for a folder without photos or a missing video file; warns of an absent device."""
    if camera.kind == "folder":
        try:
            list_images(SAMPLES_DIR if camera.source is None else camera.source)
        except CameraError as exc:
            raise ConfigError(f"{where}: camera.source: {exc}") from None
    elif camera.kind == "opencv" and isinstance(camera.source, str) and not camera.source.isdigit():
        source = Path(camera.source).expanduser()
        if camera.source.startswith(("rtsp:", "http:", "https:")) or source.exists():
            return []
        if camera.source.startswith("/dev/"):
            return [f"{where}: camera.source: {source} is not there (is the camera connected?)"]
        raise ConfigError(
            f"{where}: camera.source: video file {source} does not exist; "
            "give a camera index, /dev/videoN or a video file"
        )
    return []
