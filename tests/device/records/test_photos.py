"""The saved item photos: bounded by count and size, oldest first, inside their own folder."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np

from smartbin.device.records.photos import ImageStore


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def at(second: int) -> datetime:
    return datetime(2026, 11, 22, 10, 0, second, 123456, UTC)


def test_images_are_bounded_by_count_oldest_first(tmp_path):
    store = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    paths = [store.save(noise(i), at(i), "can") for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [
        f"smartbin-20261122T1000{s:02d}123456Z-can.jpg" for s in (2, 3, 4)
    ]
    assert not paths[0].exists() and paths[4].exists()


def test_images_are_bounded_by_size(tmp_path):
    one = ImageStore(tmp_path / "probe", max_count=10, max_mb=100)
    size = one.save(noise(0), at(0), "can").stat().st_size
    store = ImageStore(tmp_path / "img", max_count=100, max_mb=2.5 * size / 1e6)
    for i in range(6):
        store.save(noise(i), at(i), "can")
    assert store.count == 2
    assert store.total_bytes <= 2.5 * size * 1.1
    assert sum(os.path.getsize(p) for p in (tmp_path / "img").iterdir()) == store.total_bytes


def test_an_existing_folder_counts_towards_the_limit(tmp_path):
    first = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    for i in range(3):
        first.save(noise(i), at(i), "glass")
    again = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    again.save(noise(9), at(9), None)
    assert again.count == 3 and len(list((tmp_path / "img").iterdir())) == 3
    assert (tmp_path / "img" / "smartbin-20261122T100009123456Z-none.jpg").exists()


def test_odd_label_characters_stay_inside_the_image_folder(tmp_path):
    store = ImageStore(tmp_path / "img", max_count=3, max_mb=100)
    path = store.save(noise(0), at(0), "../paper/card board")
    assert (
        path.parent == tmp_path / "img"
        and path.name == "smartbin-20261122T100000123456Z-___paper_card_board.jpg"
    )
