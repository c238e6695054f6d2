"""A camera that shows photos from disk, and can act out camera faults on cue.

Used by the simulation and the tests. Like OctoPrint's virtual printer, it answers the same
interface as the real device and can misbehave when told to: ``faults`` maps a capture number
(0-based count of ``capture()`` calls over the camera's life) to ``"raise"`` (the call raises
:class:`CameraError`, as a camera that dropped out would) or ``"black"`` (a black frame of the
photo's size, as a camera with its lens covered or its lights off would).

Photos come back at their own size; the classifier resizes them to the model's input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import CameraError
from ...files import dir_problem
from ...vision.images import read_rgb
from .base import Camera

#: File name endings taken as images when a folder is searched (case-insensitive).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

FAULTS = ("raise", "black")


def list_images(source: Path | str) -> list[Path]:
    """The images a :class:`FolderCamera` on ``source`` shows, in the order it shows them.

    A directory is searched recursively (hidden files and folders skipped) and sorted by path
    relative to it; a file is taken as the one image. Raises :class:`CameraError` when the
    path does not exist or the folder holds no image.
    """
    root = Path(source).expanduser()
    if root.is_file():
        return [root]
    problem = dir_problem(root)
    if problem == "no such folder":
        raise CameraError(f"image folder {root} does not exist; give a folder of photos or one image file")
    if problem:
        raise CameraError(f"image folder {root}: {problem}; give a folder of photos or one image file")
    images = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not images:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise CameraError(f"no images in {root} (searched sub-folders for {suffixes})")
    return sorted(images, key=lambda path: path.relative_to(root).as_posix())


class FolderCamera(Camera):
    """Shows each image ``frames_per_image`` times, then the next; raises when they run out.

    With ``frames_per_image`` equal to the number of frames the daemon votes over, every frame
    of one simulated item sees the same photo. Where it has got to survives ``reopen()``: the
    scene in front of a camera does not change because the camera was restarted, so a retry
    after a failure sees the same photo. A ``"raise"`` fault does not use up a frame; a
    ``"black"`` frame does.

    A file that cannot be used (not an image, corrupt, too small: see
    :func:`smartbin.device.vision.images.read_rgb`) is a photo nobody can classify: it fails each capture,
    retries after ``reopen()`` included, until a capture comes without a ``reopen()`` before it
    (the daemon gave up on that item and the next one has arrived); then the next photo is shown.
    So each photo gives exactly one item, and a bad one is a capture fault of its own item.
    """

    live = False  # each photo is an item: none is taken between items

    def __init__(
        self,
        source: Path | str,
        *,
        frames_per_image: int = 1,
        loop: bool = False,
        faults: Mapping[int, str] | None = None,
    ) -> None:
        if frames_per_image < 1:
            raise ValueError(f"frames_per_image must be 1 or more, got {frames_per_image}")
        faults = dict(faults or {})
        for number, fault in faults.items():
            if fault not in FAULTS:
                raise ValueError(f"fault at capture {number} must be one of {FAULTS}, got {fault!r}")
        self.source = Path(source).expanduser()
        self.frames_per_image = frames_per_image
        self.loop = loop
        self.faults = faults
        self.name = f"folder:{self.source}"
        #: The images in showing order (filled by ``open()``).
        self.paths: list[Path] = []
        #: The file behind the last frame returned (or the last file that failed to decode).
        self.last_path: Path | None = None
        #: How many times ``capture()`` has been called, faults included.
        self.captures = 0
        self._index = 0  # the image in front of the camera
        self._shown = 0  # frames of it already returned
        self._frame: np.ndarray | None = None  # its decoded pixels
        self._unusable = False  # the photo in front failed to decode and no reopen() came since
        self._open = False

    @property
    def remaining(self) -> int:
        """Images not yet shown (not counting the one in front of the camera once shown)."""
        if not self.paths:
            return 0
        return len(self.paths) - self._index - (1 if self._shown else 0)

    def open(self) -> None:
        if not self.paths:
            self.paths = list_images(self.source)
        self._unusable = False  # a retry of the same item: show the same photo again
        self._open = True

    def close(self) -> None:
        self._open = False

    def capture(self) -> np.ndarray:
        if not self._open:
            raise CameraError(f"camera {self.name} is not open")
        if self._unusable:  # the item of the unusable photo is over: this capture is for the next
            self._advance()
        number = self.captures
        self.captures += 1
        fault = self.faults.get(number)
        if fault == "raise":
            raise CameraError(f"camera {self.name} failed at capture {number} (simulated fault)")
        if self._index >= len(self.paths):
            if not self.loop:
                raise CameraError(f"camera {self.name} has no more images ({len(self.paths)} shown)")
            self._index = 0
        path = self.paths[self._index]
        self.last_path = path
        if self._frame is None:
            try:
                self._frame = read_rgb(path)
            except CameraError:
                self._unusable = True
                raise
        frame = np.zeros_like(self._frame) if fault == "black" else self._frame.copy()
        self._shown += 1
        if self._shown >= self.frames_per_image:
            self._advance()
        return frame

    def _advance(self) -> None:
        self._index += 1
        self._shown = 0
        self._frame = None
        self._unusable = False
