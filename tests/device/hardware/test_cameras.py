"""Cameras: the folder camera (order, faults, exhaustion), the picamera2 adapter against a fake
picamera2 module, and the OpenCV adapter against a real video file."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from smartbin.device.errors import CameraError, ConfigError
from smartbin.device.hardware.cameras import (
    SAMPLES_DIR,
    Camera,
    FolderCamera,
    OpenCVCamera,
    Picamera2Camera,
    create_camera,
    list_images,
    read_rgb,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (24, 18)) -> Path:
    """A solid-colour PNG (lossless, so the colour comes back exactly) of size (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = rgb
    assert cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def colour(frame: np.ndarray) -> tuple[int, ...]:
    return tuple(int(c) for c in frame[0, 0])


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Four photos in nested folders, written out of order, plus files to be ignored."""
    root = tmp_path / "photos"
    write_image(root / "b" / "x.png", BLUE)
    write_image(root / "c.png", WHITE)
    write_image(root / "a" / "z.png", GREEN, size=(40, 16))
    write_image(root / "a" / "sub" / "y.PNG", RED)
    write_image(root / ".hidden" / "h.png", WHITE)
    write_image(root / "a" / ".dot.png", WHITE)
    (root / "notes.txt").write_text("not an image")
    return root


# --- folder camera -------------------------------------------------------------------------


def test_folder_camera_recurses_and_shows_images_sorted_by_relative_path(photos: Path) -> None:
    expected = ["a/sub/y.PNG", "a/z.png", "b/x.png", "c.png"]
    assert [p.relative_to(photos).as_posix() for p in list_images(photos)] == expected
    with FolderCamera(photos) as camera:
        assert camera.remaining == 4
        seen = []
        for _ in expected:
            frame = camera.capture()
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
            seen.append((camera.last_path.relative_to(photos).as_posix(), colour(frame)))
        assert seen == [("a/sub/y.PNG", RED), ("a/z.png", GREEN), ("b/x.png", BLUE), ("c.png", WHITE)]
        assert camera.remaining == 0


def test_folder_camera_returns_photos_at_their_own_size(photos: Path) -> None:
    with FolderCamera(photos / "a" / "z.png") as camera:
        assert camera.capture().shape == (16, 40, 3)


def test_each_image_is_shown_frames_per_image_times(photos: Path) -> None:
    with FolderCamera(photos, frames_per_image=3) as camera:
        colours = [colour(camera.capture()) for _ in range(6)]
        assert colours == [RED] * 3 + [GREEN] * 3
        assert camera.remaining == 2


def test_frames_are_copies_so_callers_cannot_change_later_frames(photos: Path) -> None:
    with FolderCamera(photos, frames_per_image=2) as camera:
        camera.capture()[:] = 0
        assert colour(camera.capture()) == RED


def test_folder_camera_raises_when_images_run_out_and_loops_when_asked(photos: Path) -> None:
    with FolderCamera(photos) as camera:
        for _ in range(4):
            camera.capture()
        with pytest.raises(CameraError, match="no more images"):
            camera.capture()
    with FolderCamera(photos, loop=True) as camera:
        colours = [colour(camera.capture()) for _ in range(5)]
        assert colours[4] == RED


def test_faults_raise_and_black_frames_on_cue(photos: Path) -> None:
    camera = FolderCamera(photos, frames_per_image=2, faults={1: "raise", 2: "black", 4: "raise"})
    with camera:
        assert colour(camera.capture()) == RED  # capture 0
        with pytest.raises(CameraError, match="capture 1"):
            camera.capture()
        black = camera.capture()  # capture 2: the second frame of the red photo, black
        assert black.shape == (18, 24, 3) and not black.any()
        assert camera.last_path.name == "y.PNG"
        assert colour(camera.capture()) == GREEN  # capture 3
        with pytest.raises(CameraError):
            camera.capture()  # capture 4
        # A failed capture used no frame: after reopening, the same photo is still there.
        camera.reopen()
        assert colour(camera.capture()) == GREEN  # capture 5
        assert colour(camera.capture()) == BLUE
    assert camera.captures == 7


def test_a_corrupt_file_fails_its_capture_names_the_file_and_is_skipped(tmp_path: Path) -> None:
    write_image(tmp_path / "1.png", RED)
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    write_image(tmp_path / "3.png", BLUE)
    with FolderCamera(tmp_path) as camera:
        assert colour(camera.capture()) == RED
        with pytest.raises(CameraError, match=r"2\.jpg"):
            camera.capture()
        assert colour(camera.capture()) == BLUE


def test_a_retry_after_reopen_sees_the_same_unusable_photo_the_next_capture_the_next_photo(
    tmp_path: Path,
) -> None:
    """The daemon retries an item after reopen(); the photo stays until the item is given up."""
    write_image(tmp_path / "1.png", RED)
    write_image(tmp_path / "2.png", GREEN, size=(1, 1))  # too small to classify
    write_image(tmp_path / "3.png", BLUE)
    with FolderCamera(tmp_path, frames_per_image=2) as camera:
        assert [colour(camera.capture()) for _ in range(2)] == [RED, RED]
        for _ in range(3):  # the first try and two retries of the item
            with pytest.raises(CameraError, match=r"2\.png is 1x1 px, too small"):
                camera.capture()
            assert camera.last_path.name == "2.png"
            camera.reopen()
        with pytest.raises(CameraError, match=r"2\.png"):
            camera.capture()  # the last retry; the daemon gives up on the item without a reopen
        assert [colour(camera.capture()) for _ in range(2)] == [BLUE, BLUE]  # the next item
        assert camera.last_path.name == "3.png"


def test_a_truncated_jpeg_is_refused_although_opencv_would_decode_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (200, 200))
    ok, jpeg = cv2.imencode(".jpg", noisy)
    assert ok
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(jpeg.tobytes() + b"\0" * 16)  # padding after the end marker is fine
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None  # OpenCV alone would not notice
    assert read_rgb(whole).shape == (200, 200, 3)
    with pytest.raises(CameraError, match=r"cut\.jpg is a truncated JPEG"):
        read_rgb(tmp_path / "cut.jpg")


def test_folder_camera_open_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(CameraError, match="no images in"):
        FolderCamera(tmp_path / "empty").open()
    with pytest.raises(CameraError, match="does not exist"):
        FolderCamera(tmp_path / "missing").open()
    with pytest.raises(CameraError, match="not open"):
        FolderCamera(tmp_path).capture()
    with pytest.raises(ValueError):
        FolderCamera(tmp_path, faults={0: "explode"})


# --- create_camera and the shipped samples -------------------------------------------------


def test_create_camera_builds_each_kind_and_refuses_unknown_ones(photos: Path) -> None:
    assert isinstance(create_camera("folder", width=640, height=480, source=photos), FolderCamera)
    opencv = create_camera("opencv", width=640, height=480, source="1")
    assert isinstance(opencv, OpenCVCamera) and opencv.source == 1
    pi = create_camera("picamera2", width=640, height=480)
    assert isinstance(pi, Picamera2Camera) and pi.camera_num == 0
    assert all(isinstance(c, Camera) for c in (opencv, pi))
    with pytest.raises(ConfigError, match="picamera2, opencv, folder"):
        create_camera("webcam", width=640, height=480)
    with pytest.raises(ConfigError, match="camera number"):
        create_camera("picamera2", width=640, height=480, source="/dev/video0")
    with pytest.raises(ConfigError, match="picamera2 camera only"):
        create_camera("opencv", width=640, height=480, controls={"AfMode": 0})


def test_default_folder_camera_shows_the_bundled_samples() -> None:
    camera = create_camera("folder", width=640, height=480, frames_per_image=2)
    assert Path(camera.source) == SAMPLES_DIR
    with camera:
        labels = sorted({p.parent.name for p in camera.paths})
        assert labels == ["can", "cardboard", "glass", "paper", "plastic", "trash"]
        assert len(camera.paths) == 18
        first = camera.capture()
        assert first.dtype == np.uint8 and first.shape == (512, 384, 3)  # TrashNet photos: 384 wide, 512 tall
    assert (SAMPLES_DIR / "ATTRIBUTION.md").is_file()


def test_importing_cameras_does_not_import_picamera2_or_tensorflow() -> None:
    code = (
        "import sys, smartbin.device.hardware.cameras\n"
        "bad = [m for m in ('picamera2', 'libcamera', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- picamera2 adapter, against a fake picamera2 module ----------------------------------

# How libcamera's formats lay out an (R, G, B) pixel in numpy: the name lists the bytes from
# the most significant end of a little-endian word, so memory order is the name reversed.
LIBCAMERA_MEMORY_ORDER = {"BGR888": "RGB", "RGB888": "BGR", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}


class FakePicamera2:
    """Records the calls smartbin makes and renders a solid scene in the requested format."""

    instances: ClassVar[list[FakePicamera2]] = []
    scene = RED
    fail_init = False
    fail_capture = False

    def __init__(self, camera_num: int = 0) -> None:
        if self.fail_init:
            raise RuntimeError("Camera __init__ sequence did not complete.\n  [libcamera detail]")
        self.calls: list[str] = [f"init {camera_num}"]
        self.config: dict | None = None
        self.started = False
        type(self).instances.append(self)

    def create_video_configuration(self, main: dict | None = None, **kwargs: object) -> dict:
        self.calls.append("create_video_configuration")
        self.config_kwargs = kwargs
        return {"use_case": "video", "main": dict(main or {}), **kwargs}

    def configure(self, config: dict) -> None:
        assert not self.started, "picamera2 refuses to configure a running camera"
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.started and self.config is not None
        self.calls.append(f"capture_array {name}")
        if self.fail_capture:
            raise RuntimeError("dequeue timed out")
        width, height = self.config["main"]["size"]
        order = LIBCAMERA_MEMORY_ORDER[self.config["main"]["format"]]
        values = dict(zip("RGB", self.scene, strict=True), X=255)
        frame = np.empty((height, width, len(order)), np.uint8)
        frame[:] = [values[c] for c in order]
        return frame

    def switch_mode_and_capture_array(self, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("a per-item mode switch costs 0.5-0.7 s on a Pi")

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    fake = type("FakePicamera2", (FakePicamera2,), {"instances": []})
    module.Picamera2 = fake
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return fake


def test_picamera2_is_configured_and_started_once_and_each_capture_takes_a_frame(fake_picamera2) -> None:
    camera = Picamera2Camera(1, width=64, height=48)
    with camera:
        frames = [camera.capture() for _ in range(3)]
    (cam,) = fake_picamera2.instances
    assert cam.calls == [
        "init 1",
        "create_video_configuration",
        "configure",
        "start",
        "capture_array main",
        "capture_array main",
        "capture_array main",
        "stop",
        "close",
    ]
    assert cam.config["main"] == {"size": (64, 48), "format": "BGR888"}
    assert cam.config_kwargs.get("queue") is False
    assert cam.config_kwargs.get("controls") == {}
    for frame in frames:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8


def test_picamera2_controls_are_set_once_in_the_configuration(fake_picamera2) -> None:
    controls = {"AfMode": 0, "LensPosition": 4.0, "ExposureTime": 8000}
    with create_camera("picamera2", width=64, height=48, source="0", controls=controls) as camera:
        camera.capture()
        camera.capture()
    (cam,) = fake_picamera2.instances
    assert cam.config_kwargs["controls"] == controls
    assert cam.calls.count("configure") == 1


@pytest.mark.parametrize("scene", [RED, GREEN, BLUE, (200, 100, 30)])
def test_picamera2_frames_come_back_in_rgb_order(fake_picamera2, scene) -> None:
    fake_picamera2.scene = scene
    with Picamera2Camera(width=32, height=16) as camera:
        assert colour(camera.capture()) == scene


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes `import picamera2` fail
    with pytest.raises(CameraError, match=r"sudo apt install python3-picamera2.*--system-site-packages"):
        Picamera2Camera(width=64, height=48).open()


def test_picamera2_that_fails_to_import_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility.')\n"
    )
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CameraError, match=r"fails to import \(numpy.dtype size changed.*numpy<2") as caught:
        Picamera2Camera(width=64, height=48).open()
    assert "sudo apt install" not in str(caught.value)


def test_picamera2_that_cannot_open_is_a_camera_error(fake_picamera2) -> None:
    fake_picamera2.fail_init = True
    with pytest.raises(CameraError, match="cannot open Pi camera 0: Camera __init__ sequence") as caught:
        Picamera2Camera(width=64, height=48).open()
    assert "\n" not in str(caught.value) and "libcamera detail" not in str(caught.value)


def test_picamera2_failed_capture_then_reopen_configures_a_fresh_camera(fake_picamera2) -> None:
    camera = Picamera2Camera(width=64, height=48)
    camera.open()
    fake_picamera2.fail_capture = True
    with pytest.raises(CameraError, match="gave no frame: dequeue timed out"):
        camera.capture()
    fake_picamera2.fail_capture = False
    camera.reopen()
    assert colour(camera.capture()) == RED
    camera.close()
    camera.close()  # twice is fine
    first, second = fake_picamera2.instances
    assert first.calls[-2:] == ["stop", "close"]
    assert second.calls.count("configure") == 1 and second.calls.count("start") == 1


# --- OpenCV adapter, against a real video file ---------------------------------------------


def write_video(path: Path, colours: list[tuple[int, int, int]], size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for rgb in colours:
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:] = rgb[::-1]  # OpenCV writes BGR
        writer.write(frame)
    writer.release()
    return path


def test_opencv_reads_a_video_file_in_rgb_and_its_end_is_a_camera_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", [RED, GREEN, BLUE])
    with create_camera("opencv", width=640, height=480, source=str(video)) as camera:
        frames = [camera.capture() for _ in range(3)]
        with pytest.raises(CameraError, match="ended after 3 frames"):
            camera.capture()
    for frame, expected in zip(frames, [RED, GREEN, BLUE], strict=True):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        # JPEG is lossy: the channel that should be high is high, the others low.
        assert np.all(np.abs(frame.reshape(-1, 3).mean(axis=0) - expected) < 30), frame[0, 0]


def test_opencv_reopen_of_a_file_starts_it_again(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", [RED, BLUE])
    camera = OpenCVCamera(str(video), width=64, height=48)
    camera.open()
    camera.capture()
    camera.reopen()
    assert camera.capture()[0, 0, 0] > 200  # red again
    camera.close()


def test_opencv_open_failures_are_camera_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        OpenCVCamera(str(tmp_path / "missing.avi"), width=64, height=48).open()
    not_video = tmp_path / "not-a-video.avi"
    not_video.write_bytes(b"garbage" * 100)
    with pytest.raises(CameraError, match=r"cannot open video file .*cannot read it as a video") as err:
        OpenCVCamera(str(not_video), width=64, height=48).open()
    assert "group 'video'" not in str(err.value)  # no camera permission to blame
    with pytest.raises(CameraError, match="not open"):
        OpenCVCamera(0, width=64, height=48).capture()


class FakeVideoCapture:
    """Stands in for a USB camera: records the calls, returns BGR frames, can stop delivering."""

    def __init__(self, source: object) -> None:
        self.source, self.calls, self.props = source, [], {}
        self.working = True

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def grab(self) -> bool:
        self.calls.append("grab")
        return self.working

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.calls.append("read")
        if not self.working:
            return False, None
        frame = np.zeros(
            (int(self.props[cv2.CAP_PROP_FRAME_HEIGHT]), int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), 3),
            np.uint8,
        )
        frame[..., 2] = 255  # red, in OpenCV's BGR
        return True, frame

    def release(self) -> None:
        self.calls.append("release")


def test_opencv_device_asks_for_the_size_drops_the_buffered_frame_and_reports_a_lost_camera(
    monkeypatch,
) -> None:
    made: list[FakeVideoCapture] = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda source: made.append(FakeVideoCapture(source)) or made[-1])
    camera = create_camera("opencv", width=64, height=48, source="0")
    with camera:
        frame = camera.capture()
        assert frame.shape == (48, 64, 3) and colour(frame) == RED
        (cap,) = made
        assert cap.source == 0 and cap.props[cv2.CAP_PROP_BUFFERSIZE] == 1
        assert cap.calls == ["grab", "read"]
        cap.working = False
        with pytest.raises(CameraError, match="camera 0 returned no frame"):
            camera.capture()
        camera.reopen()
        assert cap.calls[-1] == "release" and len(made) == 2
