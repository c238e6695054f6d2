"""Cutting items out of a white board, pasting them onto floors and textures, the training
augmentation and ``smartbin floor-set``, on small synthetic photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartbin.converters.evaluate import scan_labelled
from smartbin.training.backgrounds import TEXTURES, floor_from_strip, floor_strips, texture
from smartbin.training.cutpaste import Cutout, PasteAugment, cut_out, item_alpha, on_white_board, paste
from smartbin.training.dataset import split_of
from smartbin.training.floor_set import REPORT, make_floor_set
from smartbin.training.images import load_rgb

CLASSES = {"can": (200, 40, 40), "glass": (40, 150, 70), "plastic": (40, 70, 210)}


def on_board(
    colour: tuple[int, int, int], rng: np.random.Generator, size=(96, 72)
) -> tuple[np.ndarray, np.ndarray]:
    """A coloured ellipse on a white board lit unevenly, with sensor noise; and the ellipse's true mask."""
    height, width = size
    light = np.linspace(235, 205, height, dtype=np.float32)[:, None, None]  # light falling off down the board
    image = np.broadcast_to(light * np.array([1.0, 0.99, 0.97], np.float32), (height, width, 3)).copy()
    truth = np.zeros(size, np.uint8)
    centre = (int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3)))
    axes = (int(rng.integers(width // 6, width // 4)), int(rng.integers(height // 6, height // 3)))
    cv2.ellipse(truth, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    image[truth == 1] = colour
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), truth


def on_floor(rng: np.random.Generator, size=(80, 60)) -> np.ndarray:
    """A photo of an item on a floor (wood or grass), with a grey box in the middle."""
    image = TEXTURES[("wood", "grass")[rng.integers(2)]](size, rng)
    image[size[0] // 4 : -size[0] // 4, size[1] // 4 : -size[1] // 4] = 128
    return image


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_mask_recovers_the_item_on_an_unevenly_lit_board() -> None:
    rng = np.random.default_rng(0)
    for colour in [*CLASSES.values(), (60, 60, 60)]:  # a dark grey item differs in lightness only
        image, truth = on_board(colour, rng)
        alpha = item_alpha(image)
        assert alpha is not None
        assert iou(alpha > 0.5, truth == 1) > 0.85, colour


def test_a_blank_board_or_a_full_frame_has_no_item() -> None:
    rng = np.random.default_rng(1)
    blank, _ = on_board((0, 0, 0), rng)
    blank[:] = 220
    assert item_alpha(blank) is None
    assert cut_out(texture((96, 72), rng)) is None


def test_white_board_photos_are_told_from_floor_photos() -> None:
    rng = np.random.default_rng(2)
    assert on_white_board(on_board(CLASSES["glass"], rng)[0])
    assert not any(on_white_board(on_floor(np.random.default_rng(i))) for i in range(10))


def test_every_texture_fills_the_size_asked_and_is_not_flat() -> None:
    for name, draw in TEXTURES.items():
        image = draw((50, 70), np.random.default_rng(3))
        assert image.shape == (50, 70, 3) and image.dtype == np.uint8, name
        assert image.std() > 3, name


def test_floor_strips_come_from_the_border_only_and_tile_any_size() -> None:
    photo = np.zeros((100, 80, 3), np.uint8)
    photo[:] = (10, 120, 30)  # the floor
    photo[15:-15, 15:-15] = (250, 0, 250)  # the item
    strips = floor_strips(photo)
    assert len(strips) == 4
    for strip in strips:
        assert strip.shape[0] < strip.shape[1]  # turned to lie horizontally
        assert (strip == (10, 120, 30)).all()
    floor = floor_from_strip(strips[0], (64, 48), np.random.default_rng(4), scale=1.7)
    assert floor.shape == (64, 48, 3) and (np.abs(floor.astype(int) - (10, 120, 30)) <= 1).all()


def test_a_pasted_item_keeps_its_own_pixels_where_it_is_opaque() -> None:
    rng = np.random.default_rng(5)
    item = rng.integers(0, 100, (20, 12, 3)).astype(np.uint8)  # darker than the background everywhere
    cutout = Cutout(rgb=item, alpha=np.ones((20, 12), np.float32), frame=(40, 30))
    background = np.full((40, 30, 3), 200, np.uint8)
    out = paste(cutout, background, rng, scale=(1.0, 1.0), max_turn=0.0, shadow=0.0)
    rows, cols = np.nonzero((out < 200).any(axis=2))
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (20, 12)
    np.testing.assert_array_equal(out[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], item)
    assert ((out == 200).all(axis=2)).sum() == 40 * 30 - 20 * 12  # the rest is background, untouched


def augment_fixture(probability: float) -> tuple[PasteAugment, list[np.ndarray]]:
    rng = np.random.default_rng(6)
    images = [on_board(colour, rng, (64, 64))[0] for colour in CLASSES.values()]
    images.append(on_floor(rng, (64, 64)))
    return PasteAugment.from_images(images, probability), images


def test_the_augmentation_is_the_same_under_a_seed_and_changes_with_it() -> None:
    augment, images = augment_fixture(1.0)
    assert augment.n_cutouts == 3 and augment.backgrounds.n_floor_strips == 4
    first = augment(images[0], 0, 42)
    np.testing.assert_array_equal(first, augment(images[0], 0, 42))
    assert not np.array_equal(first, augment(images[0], 0, 43))
    assert not np.array_equal(first, images[0])
    assert not on_white_board(first)


def test_the_augmentation_off_or_on_a_floor_photo_leaves_the_photo_as_it_is() -> None:
    off, images = augment_fixture(0.0)
    assert all(off(image, i, 7) is image for i, image in enumerate(images))
    on, images = augment_fixture(1.0)
    assert on(images[3], 3, 7) is images[3]  # a floor photo: nothing to cut out


def test_fixed_copies_paste_the_picked_photos_once_each() -> None:
    augment, _ = augment_fixture(1.0)
    picked, pasted = augment.fixed_copies(seed=1)
    assert picked.tolist() == [0, 1, 2] and pasted.shape == (3, 64, 64, 3)
    again = augment.fixed_copies(seed=1)[1]
    np.testing.assert_array_equal(pasted, again)
    none, _ = augment_fixture(0.0)
    assert len(none.fixed_copies(seed=1)[0]) == 0


def test_the_training_pipeline_pastes_deterministically_and_anew_each_epoch() -> None:
    tf = pytest.importorskip("tensorflow")
    from smartbin.training.data import Arrays, image_dataset

    augment, images = augment_fixture(1.0)
    arrays = Arrays(
        images=np.stack(images), labels=np.array([0, 1, 2, 0], np.int32), paths=[""] * 4, sources=[""] * 4
    )

    tf.config.experimental.enable_op_determinism()  # as training does: the other augmentations repeat too

    def epochs(paste) -> list[np.ndarray]:
        tf.random.set_seed(1)
        ds = image_dataset(arrays, 4, training=True, seed=1, paste=paste)
        return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(2)]

    plain, pasted, again = epochs(None), epochs(augment), epochs(augment)
    for a, b in zip(pasted, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(pasted[0], pasted[1])
    assert not np.array_equal(plain[0], pasted[0])


def write_sets(root: Path, n: int = 40) -> tuple[Path, Path]:
    """A white-board set of three classes and a floor set of two, ``n`` photos per class."""
    rng = np.random.default_rng(8)
    items, floors = root / "board", root / "floors"
    for label, colour in CLASSES.items():
        (items / label).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(items / label / f"{label}{i}.png"), on_board(colour, rng)[0][..., ::-1])
    for label in ("can", "plastic"):
        (floors / label).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(floors / label / f"dw-{label}{i}.png"), on_floor(rng)[..., ::-1])
    return items, floors


def test_floor_set_pastes_every_class_of_the_test_split_reproducibly(tmp_path: Path) -> None:
    items, floors = write_sets(tmp_path)
    made = make_floor_set(items, floors, tmp_path / "a", seed=3)
    test_items = {p.name for p in items.rglob("*.png") if split_of(p.name, 15.0, 15.0) == "test"}
    assert sum(made.counts.values()) + len(made.skipped) == len(test_items)
    assert all(made.counts[label] > 0 for label in CLASSES)
    assert made.floors == sum(split_of(p.name, 15.0, 15.0) == "test" for p in floors.rglob("*.png"))
    report = json.loads((tmp_path / "a" / REPORT).read_text())
    assert {r["item"] for r in report["pasted"]} <= test_items
    for record in report["pasted"]:
        assert record["file"].startswith(record["label"] + "/")
        assert not on_white_board(load_rgb(tmp_path / "a" / record["file"]))
    assert len(scan_labelled(tmp_path / "a", tuple(CLASSES)).items) == sum(made.counts.values())

    make_floor_set(items, floors, tmp_path / "b", seed=3)
    for path in (tmp_path / "a").rglob("*.jpg"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_a_training_run_pastes_the_white_board_items_of_its_training_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("tensorflow")
    from smartbin.training.synthetic import make_tiny_run

    items, floors = write_sets(tmp_path, n=16)
    caplog.set_level(logging.INFO, logger="smartbin.training.train")
    run = make_tiny_run(
        tmp_path, data_dirs=[items, floors], classes=list(CLASSES), paste_backgrounds=1.0, fine_tune_epochs=1
    )
    record = json.loads((run / "run.json").read_text())
    assert record["args"]["paste_backgrounds"] == 1.0 and "cut_out_s" in record["timings_s"]
    train = [line for line in (run / "splits.csv").read_text().splitlines() if line.endswith(",train")]
    from_board = sum(f"{items}/" in line for line in train)
    assert f"{from_board} of {len(train)} training photos cut out of a white board" in caplog.text
