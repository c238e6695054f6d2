"""One decoder for every path a photo takes, unreadable photos, and frames too small to classify.

Training, calibration and the parity gate, ``evaluate``, ``classify``, the folder camera and the
simulation must see the very same pixels for every kind of file the dataset check accepts
(greyscale, alpha, palette, 16-bit, CMYK, EXIF-rotated), or a model is trained on one picture and
shown another. A photo that cannot be used is a one-line error naming the file and the reason,
and in the simulation an item of its own (a capture fault) that shifts no other photo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from smartbin.converters import evaluate
from smartbin.converters.frames import load_frames
from smartbin.converters.run_dir import Example
from smartbin.device.commands.simulate import simulate
from smartbin.device.config import parse_config
from smartbin.device.errors import CameraError
from smartbin.device.hardware.cameras import FolderCamera
from smartbin.device.vision.bundle import InputSpec, load_bundle
from smartbin.device.vision.classifier import Classifier, resize_frame
from smartbin.device.vision.images import MAX_ASPECT, MIN_SIDE, ImageError, decode_image, read_rgb
from smartbin.training.dataset import scan_dataset
from smartbin.training.images import load_rgb

from .conftest import MODELS, assert_one_line_error, error_lines, run_smartbin

W, H = 48, 32
RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 30), (30, 30, 220), (255, 255, 255)
ORIENTATION = 0x0112


def scene() -> Image.Image:
    """Left half red, right half blue, a green square top left: every turn and flip shows."""
    image = Image.new("RGB", (W, H), RED)
    image.paste(BLUE, (W // 2, 0, W, H))
    image.paste(GREEN, (0, 0, 8, 8))
    return image


def with_alpha(mode: str = "RGBA") -> Image.Image:
    """The scene with its right half fully transparent and its bottom rows half transparent."""
    image = scene().convert("RGBA")
    alpha = Image.new("L", (W, H), 255)
    alpha.paste(0, (W // 2, 0, W, H))
    alpha.paste(128, (0, H - 4, W // 2, H))
    image.putalpha(alpha)
    return image.convert(mode) if mode != "RGBA" else image


def exif(orientation: int) -> Image.Exif:
    data = Image.Exif()
    data[ORIENTATION] = orientation
    return data


def save_16bit_rgb(path: Path) -> None:
    rgb = np.asarray(scene(), np.uint16) * 257  # 257 * k is k in 16 bits
    rgb[0, -1] = (1000, 32896, 65535)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def palette_with_transparency() -> Image.Image:
    image = scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image.info["transparency"] = image.getpixel((W - 1, 0))  # the blue half
    return image


# file name -> how to write it (every mode the dataset check converts, and EXIF orientations)
MAKERS = {
    "rgb.png": lambda p: scene().save(p),
    "rgb.jpg": lambda p: scene().save(p, quality=95),
    "grey-L.png": lambda p: scene().convert("L").save(p),
    "grey-alpha-LA.png": lambda p: with_alpha("LA").save(p),
    "alpha-RGBA.png": lambda p: with_alpha().save(p),
    "palette-P.png": lambda p: scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p),
    "palette-transparent-P.png": lambda p: palette_with_transparency().save(p),
    "grey16-I16.png": lambda p: Image.fromarray(np.asarray(scene().convert("L"), np.uint16) * 257).save(p),
    "rgb16.png": save_16bit_rgb,
    "cmyk.jpg": lambda p: scene().convert("CMYK").save(p, quality=95),
    "cmyk.tiff": lambda p: scene().convert("CMYK").save(p),
    "rotated-6.jpg": lambda p: scene().save(p, quality=95, exif=exif(6)),
    "rotated-3.png": lambda p: scene().save(p, exif=exif(3)),
    "rotated-8-alpha.png": lambda p: with_alpha().save(p, exif=exif(8)),
}


@pytest.fixture(scope="module")
def mode_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modes")
    for name, make in MAKERS.items():
        make(root / name)
    return root


def photo(root: Path, name: str) -> np.ndarray:
    return decode_image(root / name)


# --- what each kind of file becomes ----------------------------------------------------------


def test_plain_rgb_is_what_pillow_sees_and_the_other_modes_match_pillow_where_it_was_right(
    mode_photos: Path,
) -> None:
    for name in ("rgb.png", "rgb.jpg", "grey-L.png", "palette-P.png", "cmyk.tiff"):
        with Image.open(mode_photos / name) as image:
            expected = np.asarray(image.convert("RGB"))
        assert np.array_equal(photo(mode_photos, name), expected), name


def test_transparent_pixels_become_white_and_half_transparent_ones_half_white(mode_photos: Path) -> None:
    for name in ("alpha-RGBA.png", "grey-alpha-LA.png", "palette-transparent-P.png"):
        rgb = photo(mode_photos, name)
        assert rgb.shape == (H, W, 3)
        assert (rgb[:, W // 2 :] == 255).all(), name  # not black, not the blue hidden under alpha 0
    rgba = photo(mode_photos, "alpha-RGBA.png")
    assert rgba[2, 10].tolist() == list(RED)  # opaque: as it is
    assert rgba[H - 1, 10].tolist() == [237, 142, 142]  # alpha 128: round(c * 128/255 + 255 * 127/255)


def test_16_bit_channels_are_scaled_not_truncated_or_stretched(mode_photos: Path) -> None:
    assert np.array_equal(photo(mode_photos, "rgb16.png")[:, :-1], np.asarray(scene())[:, :-1])
    assert photo(mode_photos, "rgb16.png")[0, -1].tolist() == [4, 128, 255]  # round(v * 255 / 65535)
    grey = photo(mode_photos, "grey16-I16.png")
    assert np.array_equal(grey, np.asarray(scene().convert("L").convert("RGB")))  # not stretched to 255


def test_greyscale_becomes_three_equal_channels_and_cmyk_keeps_its_colours(mode_photos: Path) -> None:
    grey = photo(mode_photos, "grey-L.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    cmyk = photo(mode_photos, "cmyk.jpg").astype(int)
    assert np.abs(cmyk[H // 2, 4] - RED).max() <= 12 and np.abs(cmyk[H // 2, -4] - BLUE).max() <= 12


def test_exif_orientation_is_applied_and_transparency_turns_with_the_pixels(mode_photos: Path) -> None:
    plain = np.asarray(scene()).astype(int)
    turned = photo(mode_photos, "rotated-6.jpg").astype(int)  # 6: turn 90 degrees clockwise
    assert turned.shape == (W, H, 3)
    assert np.abs(turned - np.rot90(plain, -1)).mean() < 4  # JPEG: close, not exact
    upside_down = photo(mode_photos, "rotated-3.png")  # 3: turn 180 degrees
    assert np.array_equal(upside_down, np.rot90(plain, 2))
    alpha = photo(mode_photos, "rotated-8-alpha.png")  # 8: turn 90 degrees anticlockwise
    assert alpha.shape == (W, H, 3)
    assert (alpha[: W // 2] == 255).all()  # the transparent right half is now on top, still white
    assert alpha[-3, 2].tolist() == list(GREEN)  # the green corner, now bottom left


# --- every path sees the same pixels --------------------------------------------------------


def test_training_calibration_parity_and_the_folder_camera_see_the_same_pixels(mode_photos: Path) -> None:
    spec = InputSpec(height=24, width=24)
    names = sorted(MAKERS)
    frames = load_frames([Example(mode_photos / n, "can") for n in names], spec)  # calibration, parity
    with FolderCamera(mode_photos) as camera:
        for i, name in enumerate(names):
            expected = decode_image(mode_photos / name)
            assert np.array_equal(load_rgb(mode_photos / name), expected), name  # training
            assert np.array_equal(camera.capture(), expected), name  # folder camera, simulation
            assert camera.last_path.name == name
            assert np.array_equal(frames[i], resize_frame(expected, spec)), name
    assert evaluate.read_rgb is read_rgb  # evaluate decodes with the bin's function


def test_training_arrays_hold_the_bins_pixels(mode_photos: Path) -> None:
    pytest.importorskip("tensorflow")
    from smartbin.training.data import load_arrays
    from smartbin.training.dataset import Item

    names = sorted(MAKERS)
    items = [Item(path=mode_photos / n, label="can", split="train") for n in names]
    arrays = load_arrays(items, ["can"], (24, 24), "stretch")
    spec = InputSpec(height=24, width=24)
    for i, name in enumerate(names):
        assert np.array_equal(arrays.images[i], resize_frame(decode_image(mode_photos / name), spec)), name


def test_classify_and_simulate_score_the_same_pixels(mode_photos: Path, tmp_path: Path) -> None:
    model = MODELS / "colour3-float32"
    classifier = Classifier(load_bundle(model))
    names = sorted(MAKERS)
    expected = {n: classifier.classify(decode_image(mode_photos / n)).scores for n in names}
    result = run_smartbin("classify", *(mode_photos / n for n in names), "--model", model, "--json")
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        record = json.loads(line)
        assert record["scores"] == pytest.approx(expected[Path(record["image"]).name], abs=1e-6)
    assert len(result.stdout.splitlines()) == len(names)

    sim = run_smartbin(
        "simulate", "--fast", "--json", "--images", mode_photos, "--model", model, "--state-dir", tmp_path
    )
    assert sim.returncode == 0, sim.stderr
    items = [json.loads(line) for line in sim.stdout.splitlines()]
    assert [Path(i["image"]).name for i in items] == names
    for item in items:
        assert item["scores"] == pytest.approx(expected[Path(item["image"]).name], abs=1e-5)


def test_the_dataset_check_reports_each_converted_mode_and_skips_what_the_bin_refuses(
    mode_photos: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "can").mkdir(parents=True)
    for name in MAKERS:
        (data / "can" / name).write_bytes((mode_photos / name).read_bytes())
    Image.new("RGB", (40 * 9, 40), RED).save(data / "can" / "banner.png")  # 9:1
    (data / "glass").mkdir()
    for i in range(12):
        Image.new("RGB", (40, 30), (30, 150 + i, 30)).save(data / "glass" / f"{i}.png")
    scan = scan_dataset(data, min_images=5, min_size=16)
    converted = {Path(c["path"]).name: c["from"] for c in scan.converted}
    assert converted == {
        "grey-L.png": "grayscale",
        "grey-alpha-LA.png": "grayscale+alpha",
        "alpha-RGBA.png": "alpha",
        "palette-P.png": "palette",
        "palette-transparent-P.png": "palette",
        "grey16-I16.png": "16-bit grayscale",
        "cmyk.jpg": "CMYK",
        "cmyk.tiff": "CMYK",
        "rotated-8-alpha.png": "alpha",
    }
    (banner,) = [s for s in scan.skipped if s["path"].endswith("banner.png")]
    assert banner["reason"].startswith("the bin would refuse it") and "too narrow" in banner["reason"]


# --- files that cannot be used ----------------------------------------------------------------


def unreadable_files(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, what the one line says)."""
    root.mkdir(parents=True, exist_ok=True)
    scene().save(root / "whole.jpg", quality=95)
    jpeg = (root / "whole.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    scene().save(root / "whole.png")
    png = (root / "whole.png").read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    (root / "text.png").write_text("not an image at all")
    (root / "empty.jpg").write_bytes(b"")
    (root / "folder.png").mkdir(exist_ok=True)
    Image.fromarray(np.full((H, W), 0.5, np.float32)).save(root / "float.tiff")
    os.mkfifo(root / "pipe.jpg")  # reading it would wait for a writer forever
    # Headers declaring 20000x20000 px (400 megapixels): a few kilobytes that would take gigabytes
    (root / "huge.png").write_bytes(png[:16] + (20000).to_bytes(4, "big") * 2 + png[24:])
    frame = jpeg.index(b"\xff\xc0")  # baseline frame header: marker, length, precision, height, width
    (root / "huge.jpg").write_bytes(jpeg[: frame + 5] + (20000).to_bytes(2, "big") * 2 + jpeg[frame + 9 :])
    return {
        "missing": (root / "missing.png", "no such file"),
        "directory": (root / "folder.png", "is a directory"),
        "empty": (root / "empty.jpg", "the file is empty"),
        "not an image": (root / "text.png", "not an image"),
        "truncated jpeg": (root / "cut.jpg", "truncated JPEG"),
        "truncated png": (root / "cut.png", "not an image, or a corrupt one"),
        "floating-point pixels": (root / "float.tiff", "float32 pixels are not supported"),
        "named pipe": (root / "pipe.jpg", "not a regular file"),
        "huge png": (root / "huge.png", "is 20000x20000 px, more than smartbin decodes (100 megapixels)"),
        "huge jpeg": (root / "huge.jpg", "is 20000x20000 px, more than smartbin decodes (100 megapixels)"),
    }


def test_each_unreadable_file_says_which_file_and_why_in_one_line(tmp_path: Path) -> None:
    for name, (path, says) in unreadable_files(tmp_path).items():
        with pytest.raises(ImageError) as err:
            read_rgb(path)
        message = str(err.value)
        assert says in message and str(path) in message and "\n" not in message, name


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_photo_without_read_permission_says_permission_denied(tmp_path: Path) -> None:
    scene().save(tmp_path / "locked.png")
    (tmp_path / "locked.png").chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        read_rgb(tmp_path / "locked.png")


def test_smartbin_classify_gives_one_line_per_unusable_photo_and_classifies_the_rest(tmp_path: Path) -> None:
    cases = unreadable_files(tmp_path / "bad")
    scene().save(tmp_path / "good.png")
    Image.new("RGB", (1, 1), RED).save(tmp_path / "dot.png")
    images = [tmp_path / "good.png", *(path for path, _ in cases.values()), tmp_path / "dot.png"]
    result = run_smartbin("classify", *images, "--model", MODELS / "colour3-int8")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path / 'good.png'}: ") and len(result.stdout.splitlines()) == 1
    lines = error_lines(result)
    assert len(lines) == len(cases) + 1
    for line, (path, says) in zip(lines, cases.values(), strict=False):
        assert str(path) in line and says in line
    assert "dot.png is 1x1 px, too small to classify" in lines[-1]
    assert "libpng" not in result.stderr and "WARN" not in result.stderr  # no native noise


# --- frames too small or too narrow to classify -----------------------------------------------


@pytest.mark.parametrize(
    "size, ok",
    [
        ((1, 1), False),
        ((MIN_SIDE - 1, 64), False),
        ((MIN_SIDE, MIN_SIDE), True),
        ((int(MIN_SIDE * MAX_ASPECT), MIN_SIDE), True),
        ((int(MIN_SIDE * MAX_ASPECT) + 1, MIN_SIDE), False),
        ((20, 400), False),
    ],
)
def test_frames_too_small_or_too_narrow_are_refused(tmp_path: Path, size: tuple[int, int], ok: bool) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", size, RED).save(path)
    if ok:
        assert read_rgb(path).shape == (size[1], size[0], 3)
        return
    with pytest.raises(ImageError, match=rf"is {size[0]}x{size[1]} px, too (small|narrow) to classify"):
        read_rgb(path)
    classifier = Classifier(load_bundle(MODELS / "colour3-int8"))
    with pytest.raises(ValueError, match=r"too (small|narrow) to classify"):  # any camera's frame
        classifier.classify_frames([np.full((size[1], size[0], 3), 200, np.uint8)])


def test_smartbin_classify_refuses_a_1x1_image_in_one_line(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), RED).save(tmp_path / "dot.png")
    result = run_smartbin("classify", tmp_path / "dot.png", "--model", MODELS / "colour3-int8")
    assert_one_line_error(result, "dot.png is 1x1 px, too small to classify", f"at least {MIN_SIDE} px")
    assert result.stdout == ""


# --- the simulation: one item per photo, each charged to its own photo -------------------------


@pytest.mark.parametrize("frames, retries", [(1, 0), (1, 2), (3, 0), (3, 2)])
def test_unusable_photos_are_items_of_their_own_and_shift_nothing(
    tmp_path: Path, frames: int, retries: int
) -> None:
    photos = tmp_path / "photos"
    for folder in ("can", "glass", "plastic"):
        (photos / folder).mkdir(parents=True)
    Image.new("RGB", (40, 30), RED).save(photos / "can" / "0.png")
    (photos / "can" / "1-broken.png").write_bytes(b"\x89PNG broken")
    Image.new("RGB", (40, 30), GREEN).save(photos / "glass" / "0.png")
    Image.new("RGB", (1, 1), GREEN).save(photos / "glass" / "1-dot.png")
    Image.new("RGB", (40, 30), BLUE).save(photos / "plastic" / "0.png")
    Image.new("RGB", (64, 64), BLUE).save(tmp_path / "whole.jpg")
    jpeg = (tmp_path / "whole.jpg").read_bytes()
    (photos / "plastic" / "1-cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.new("RGB", (40, 30), BLUE).save(photos / "plastic" / "2.png")
    config = parse_config(
        {"classifier": {"frames": frames, "threads": 1}, "camera": {"retries": retries}}, where="test"
    )
    items = []
    summary = simulate(
        config,
        images=photos,
        model=MODELS / "colour3-int8",
        fast=True,
        state_dir=tmp_path / "state",
        on_item=items.append,
    )
    seen = [(i.image.relative_to(photos).as_posix(), i.event.label, i.event.reason) for i in items]
    assert seen == [
        ("can/0.png", "can", "sorted"),
        ("can/1-broken.png", None, "no_frame"),
        ("glass/0.png", "glass", "sorted"),
        ("glass/1-dot.png", None, "no_frame"),
        ("plastic/0.png", "plastic", "sorted"),
        ("plastic/1-cut.jpg", None, "no_frame"),
        ("plastic/2.png", "plastic", "sorted"),
    ]
    for item in items:
        assert Path(item.event.source) == item.image
        assert item.event.frames == (0 if item.event.label is None else frames)
    assert summary.items == 7 and summary.capture_faults == 3
    lines = summary.lines()
    assert "accuracy: 4/4 (100.0%)" in lines
    assert "capture faults: 3 item(s) not classified, not counted in accuracy" in lines


def test_a_camera_failure_is_still_retried_on_the_same_photo(tmp_path: Path) -> None:
    """A camera that drops out (not a bad photo) recovers on the retry and loses no photo."""
    photos = tmp_path / "photos"
    for i, colour in enumerate((RED, GREEN)):
        photos.mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), colour).save(photos / f"{i}.png")
    with FolderCamera(photos, faults={0: "raise"}) as camera:
        with pytest.raises(CameraError, match="simulated fault"):
            camera.capture()
        camera.reopen()
        assert camera.capture()[0, 0].tolist() == list(RED)
        assert camera.capture()[0, 0].tolist() == list(GREEN)
