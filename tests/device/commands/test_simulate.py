"""`smartbin simulate`: the real daemon on mock pins, its output formats, and a soak."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from smartbin.device.cli import main
from smartbin.device.commands.simulate import DeferredInterrupts, SimulatedFill, simulate
from smartbin.device.config import parse_config
from smartbin.device.hardware.pins import make_pin_factory

from ..conftest import MODELS, write_image


def labelled_photos(root: Path) -> Path:
    for label, colours in {"can": ["red", "red"], "glass": ["green", "grey"], "plastic": ["blue"]}.items():
        for i, colour in enumerate(colours):
            write_image(root / label / f"{i}-{colour}.png", colour)
    return root


def test_json_lines_and_summary(tmp_path, capsys):
    photos = labelled_photos(tmp_path / "photos")
    args = ["simulate", "--images", str(photos), "--model", str(MODELS / "colour3-int8"), "--fast", "--json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    items = [json.loads(line) for line in out.splitlines()]
    assert [Path(i["image"]).relative_to(photos).as_posix() for i in items] == [
        "can/0-red.png",
        "can/1-red.png",
        "glass/0-green.png",
        "glass/1-grey.png",
        "plastic/0-blue.png",
    ]
    for item in items:
        assert {"image", "label", "confidence", "compartment", "latency_ms"} <= set(item)
        assert isinstance(item["latency_ms"], float) and item["latency_ms"] > 0
    assert [i["compartment"] for i in items] == ["can", "can", "glass", "other", "plastic"]
    assert "accuracy: 4/5" in err or "accuracy: 5/5" in err  # the grey photo is a coin toss
    assert "compartments: can 2, glass 1, other 1, plastic 1" in err


def test_text_output_on_the_bundled_samples(capsys):
    assert main(["simulate", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "18 items" in out and "latency" in out and "accuracy:" in out


def test_simulation_state_goes_to_a_temporary_dir_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "real-bin"))
    photos = labelled_photos(tmp_path / "photos")
    simulate(parse_config({}), images=photos, model=MODELS / "colour3-int8", fast=True)
    assert not (tmp_path / "real-bin").exists()
    simulate(parse_config({}), images=photos, fast=True, state_dir=tmp_path / "sim")
    assert (tmp_path / "sim" / "events.db").exists()


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_thousands_of_items_all_recorded_memory_flat(tmp_path):
    photos = labelled_photos(tmp_path / "photos")
    repeat = 600  # 3000 items
    rss = {}

    def watch(item):
        n = item.event.id
        if n == 500:
            rss["warm"] = rss_kb()
        rss["end"] = rss_kb()

    summary = simulate(
        parse_config({}),
        images=photos,
        model=MODELS / "colour3-int8",
        fast=True,
        repeat=repeat,
        state_dir=tmp_path / "state",
        on_item=watch,
    )
    assert summary.items == 5 * repeat
    db = sqlite3.connect(tmp_path / "state" / "events.db")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id), COUNT(error) FROM events").fetchone() == (
        5 * repeat,
        5 * repeat,
        0,
    )
    assert summary.by_compartment["can"] == 2 * repeat
    growth_kb = rss["end"] - rss["warm"]
    assert growth_kb < 8 * 1024, f"RSS grew {growth_kb} kB over {5 * repeat - 500} items"


def test_an_unreadable_photo_is_one_item_of_its_own_and_shifts_nothing(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_image(photos / "can" / "0-red.png", "red")
    (photos / "can" / "1-broken.png").write_bytes(b"\x89PNG broken")
    write_image(photos / "glass" / "0-green.png", "green")
    write_image(photos / "plastic" / "0-blue.png", "blue")
    args = ["simulate", "--images", str(photos), "--model", str(MODELS / "colour3-int8"), "--fast", "--json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    items = [json.loads(line) for line in out.splitlines()]
    assert [(Path(i["image"]).name, i["label"], i["compartment"], i["reason"]) for i in items] == [
        ("0-red.png", "can", "can", "sorted"),
        ("1-broken.png", None, "other", "no_frame"),  # a capture fault, charged to its own photo
        ("0-green.png", "glass", "glass", "sorted"),
        ("0-blue.png", "plastic", "plastic", "sorted"),
    ]
    assert Path(items[1]["source"]).name == "1-broken.png" and "not an image" in items[1]["error"]
    assert "accuracy: 3/3 (100.0%)" in err  # the fault is not a wrong answer
    assert "capture faults: 1 item(s) not classified" in err


def test_a_file_name_that_is_not_utf8_is_sorted_and_recorded_escaped(tmp_path, capsys):
    photos = tmp_path / "photos"
    odd = photos / "can" / os.fsdecode(b"caf\xe9.png")  # OpenCV cannot even write to this name
    write_image(photos / "can" / "red.png", "red").rename(odd)
    write_image(photos / "glass" / "0-green.png", "green")
    state = tmp_path / "state"
    args = ["simulate", "--images", str(photos), "--model", str(MODELS / "colour3-int8"), "--fast", "--json"]
    assert main([*args, "--state-dir", str(state)]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(i["label"], i["reason"]) for i in items] == [("can", "sorted"), ("glass", "sorted")]
    assert items[0]["source"] == items[0]["image"] == str(odd.parent) + "/caf\\xe9.png"
    with sqlite3.connect(state / "events.db") as db:
        assert [row[0] for row in db.execute("SELECT source FROM events ORDER BY id")] == [
            items[0]["source"],
            items[1]["source"],
        ]


def test_ctrl_c_while_waiting_for_a_fill_reading_stops_at_once():
    config = parse_config({"fill": {"can": {"echo": 24, "trigger": 23, "empty_cm": 60, "full_cm": 10}}})
    factory = make_pin_factory("mock")
    try:
        fill = SimulatedFill(config, factory)
        interrupts = DeferredInterrupts()
        interrupts.signum = signal.SIGINT  # as the handler notes Ctrl-C
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fill.next_reading(30.0, interrupts)  # no reading will come
        assert time.monotonic() - started < 5
    finally:
        factory.close()
