"""The review page's API against a running daemon: real HTTP on a free port, real SQLite, real photos.

The bin sorts solid-colour photos with the colour test model (red: can, green: glass, grey: unsure,
to the fallback compartment ``other``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import select
import socket
import sqlite3
import stat
import threading
import time
import urllib.parse
import wsgiref.util
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from smartbin.device.commands.simulate import simulation_config, with_web
from smartbin.device.home.observer_setup import make_observers
from smartbin.device.home.web import queries
from smartbin.device.home.web.limits import (
    BIN_LIMITS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    NICENESS,
    Limits,
    lower_priority,
)
from smartbin.device.home.web.observer import WebObserver
from smartbin.device.records.events import EventLog, ItemEvent, add_review, reviewed_labels
from smartbin.device.records.photos import ImageStore
from smartbin.device.thresholds import as_status

from ..conftest import Bin, fast_config
from .web_client import Http, StageCamera, new_token, page_of, wait_for_items, web_config


@pytest.fixture
def sorted_bin(make_bin, tmp_path: Path):
    """A running bin with its page, after three items: red (can), green (glass), grey (unsure)."""
    config = web_config(tmp_path)
    token = new_token(config)
    observers = make_observers(config)
    assert [type(o) for o in observers] == [WebObserver]
    with make_bin("red", "green", "grey", config=config, observers=observers) as b:
        events = [b.item() for _ in range(3)]
        http = page_of(observers[0])
        wait_for_items(http, 3)
        yield b, http, events, token


def test_status_counts_what_the_bin_sorted(sorted_bin):
    b, http, events, _ = sorted_bin
    assert http.json("/healthz") == {"ok": True, "state": "ready", "last_item_at": events[-1].ts}
    status = http.json("/api/status")
    assert status["model_version"] == b.daemon.model_version
    assert status["last_item"]["id"] == events[-1].id
    assert status["counts"]["total"] == {"can": 1, "glass": 1, "plastic": 0, "other": 1, "none": 0}
    assert status["counts"]["today"] == status["counts"]["total"]
    assert status["faults"] == {}
    assert status["review_labels"] == [
        "can",
        "glass",
        "plastic",
        "cardboard",
        "paper",
        "trash",
        "not_trash",
        "empty",
    ]
    assert status["thresholds"] == as_status(b.daemon.thresholds()) and status["uptime_s"] >= 0
    assert {t["source"] for t in status["thresholds"].values()} <= {"model", "default", "config"}
    assert status["observers"]["web"]["url"] == http.base + "/"


def test_events_page_backwards_and_filter(sorted_bin):
    _, http, events, _ = sorted_bin
    first = http.json("/api/events?limit=2")
    assert [e["id"] for e in first["events"]] == [events[2].id, events[1].id]
    assert first["next_before"] == events[1].id
    rest = http.json(f"/api/events?limit=2&before={first['next_before']}")
    assert [e["id"] for e in rest["events"]] == [events[0].id] and rest["next_before"] is None
    grey = first["events"][0]
    assert (grey["reason"], grey["compartment"], grey["photo"], grey["review"], grey["box"]) == (
        "low_confidence",
        "other",
        True,
        None,
        None,  # no empty reference: no box
    )
    assert grey["frames"] == 3 and "image_path" not in grey and "source" not in grey
    uncertain = http.json("/api/events?filter=uncertain")["events"]
    assert [e["id"] for e in uncertain] == [events[2].id]
    assert http.json("/api/events?filter=wrong")["events"] == []


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=x", "limit=%C2%B2", "before=-1", f"before={2**63}", "filter=maybe"],
)
def test_bad_event_queries_get_400_saying_why(sorted_bin, query):
    _, http, _, _ = sorted_bin
    error = http.json(f"/api/events?{query}", expect=400)["error"]
    assert query.split("=")[0] in error and "expected" in error


def reviewed_ids(db: sqlite3.Connection) -> dict[int, int]:
    """event id -> the id of each of its reviews, for every reviewed event (a later one wins)."""
    return dict(db.execute("SELECT event_id, id FROM reviews ORDER BY id").fetchall())


def test_an_authorization_header_that_is_not_text_is_no_token(sorted_bin):
    _, http, events, _ = sorted_bin
    address = urllib.parse.urlsplit(http.base)
    connection = HTTPConnection(address.hostname, address.port, timeout=10)
    body = b'{"label": "glass"}'
    connection.putrequest("POST", f"/api/events/{events[0].id}/label")
    connection.putheader("Authorization", b"Bearer \xff\xfe")  # not UTF-8: bottle cannot decode it
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    assert response.status == 401 and "a valid token is needed" in json.loads(response.read())["error"]
    connection.close()


def test_an_event_log_that_is_a_folder_is_a_503_saying_so(tmp_path):
    from smartbin.device.home.web.app import make_app

    config = web_config(tmp_path)
    config.paths.events_db.mkdir(parents=True)
    app = make_app(config, read=lambda: ({}, {}), on_review=lambda review: None)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/events"}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = app(environ, lambda line, headers, exc_info=None: status.append(line))
    assert status == ["503 Service Unavailable"]
    assert (
        json.loads(b"".join(body))["error"]
        == f"{config.paths.events_db} is a folder, not an event log; fix paths.events_db"
    )


def test_a_damaged_event_log_is_a_503_naming_it(sorted_bin):
    b, http, events, token = sorted_bin
    db = b.config.paths.events_db
    db.write_bytes(os.urandom(8192))
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    for path in ("/api/events", "/api/events?filter=wrong", f"/api/events/{events[0].id}/photo"):
        error = http.json(path, expect=503)["error"]
        assert f"cannot use the event log {db}" in error and "moves it aside at its next item" in error
    status, body = http.label(events[0].id, "glass", token)
    assert status == 503 and "moves it aside" in body["error"]


def test_photos_full_size_and_thumbnails(sorted_bin):
    _, http, events, _ = sorted_bin
    status, headers, body = http.request("GET", f"/api/events/{events[0].id}/photo")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body == Path(events[0].image_path).read_bytes()
    status, headers, body = http.request("GET", f"/api/events/{events[0].id}/photo?w=80")
    small = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and small.shape[1] == 80
    assert small[..., 2].mean() > 150 and small[..., 1].mean() < 80  # still red (BGR)
    assert http.json("/api/events/99/photo", expect=404)["error"] == "no event 99"
    assert http.json(f"/api/events/{2**70}/photo", expect=404)["error"] == f"no event {2**70}"  # past SQLite
    Path(events[1].image_path).unlink()  # pruned
    assert "no longer kept" in http.json(f"/api/events/{events[1].id}/photo", expect=404)["error"]
    assert "w: expected" in http.json(f"/api/events/{events[0].id}/photo?w=7", expect=400)["error"]
    assert "w: expected" in http.json(f"/api/events/{events[0].id}/photo?w=5000", expect=400)["error"]
    for asked, made in ((300, 320), (161, 240), (1280, 1280)):  # a step of 80 up: a few sizes cached
        body = http.request("GET", f"/api/events/{events[0].id}/photo?w={asked}")[2]
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[1] == made


def test_a_thumbnail_is_made_once_until_its_photo_changes(sorted_bin):
    from smartbin.device.home.web.app import _thumbnail

    _, http, events, _ = sorted_bin
    path = f"/api/events/{events[0].id}/photo?w=160"
    first = http.request("GET", path)[2]
    made = _thumbnail.cache_info().misses
    assert http.request("GET", path)[2] == first and _thumbnail.cache_info().misses == made
    photo = Path(events[0].image_path)
    mtime_ns = photo.stat().st_mtime_ns
    assert cv2.imwrite(str(photo), np.full((48, 64, 3), (30, 220, 30), np.uint8))  # green now
    os.utime(photo, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
    again = cv2.imdecode(np.frombuffer(http.request("GET", path)[2], np.uint8), cv2.IMREAD_COLOR)
    assert again[..., 1].mean() > 150 and _thumbnail.cache_info().misses == made + 1


def test_relabel_needs_the_token_and_reaches_the_event_log(sorted_bin):
    b, http, events, token = sorted_bin
    db = sqlite3.connect(b.config.paths.events_db)
    can = events[0].id
    for given in (None, "", "x" * 32, token + "x"):
        status, body = http.label(can, "glass", given)
        assert status == 401 and "token" in body["error"]
    assert reviewed_labels(db) == {}  # nothing changed

    status, body = http.label(can, "glass", token)
    assert status == 200
    assert body["review"] | {"at": None} == {
        "id": 1,
        "event_id": can,
        "label": "glass",
        "old_label": "can",
        "who": "web 127.0.0.1",  # the shared token tells no person: the client's address
        "at": None,
    }
    assert reviewed_labels(db) == {can: "glass"}
    assert http.label(can, "not_trash", token)[1]["review"]["old_label"] == "glass"
    assert http.label(events[1].id, "glass", token)[0] == 200  # right all along: reviewed, not wrong
    again = http.label(events[1].id, "glass", token)[1]["review"]  # a double tap: the same review
    assert again["id"] == reviewed_ids(db)[events[1].id] and len(reviewed_ids(db)) == 2

    assert [e["id"] for e in http.json("/api/events?filter=wrong")["events"]] == [can]
    assert [e["id"] for e in http.json("/api/events?filter=unreviewed")["events"]] == [events[2].id]
    assert http.json("/api/events?limit=3")["events"][2]["review"]["label"] == "not_trash"

    status, body = http.label(can, "wood", token)
    assert status == 400 and "can, glass, plastic, cardboard, paper, trash, not_trash, empty" in body["error"]
    assert http.label(99, "glass", token) == (404, {"error": "no event 99"})
    assert http.label(2**70, "glass", token) == (404, {"error": f"no event {2**70}"})
    auth = {"Authorization": f"Bearer {token}"}
    for bad in (b"{not json", b"[" * 1020):  # the second nests past Python's recursion limit
        status, _, body = http.request("POST", f"/api/events/{can}/label", bad, auth)
        assert status == 400 and "no JSON object" in json.loads(body)["error"]
    form = auth | {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = http.request("POST", f"/api/events/{can}/label", b"label=glass", form)
    assert status == 415 and "expected Content-Type: application/json" in json.loads(body)["error"]
    assert reviewed_labels(db) == {can: "not_trash", events[1].id: "glass"}
    db.close()


def test_a_relabel_can_be_undone_with_the_token(sorted_bin):
    b, http, events, token = sorted_bin
    db = sqlite3.connect(b.config.paths.events_db)
    can, glass = events[0].id, events[1].id
    first = http.label(can, "glass", token)[1]["review"]
    second = http.label(can, "plastic", token)[1]["review"]
    for given in (None, "x" * 32):
        status, body = http.undo(can, second["id"], given)
        assert status == 401 and "token" in body["error"]
    assert reviewed_labels(db) == {can: "plastic"}  # nothing changed

    status, body = http.undo(can, first["id"], token)  # a later review counts now
    assert status == 409 and "a later review" in body["error"]
    assert http.undo(glass, second["id"], token)[0] == 404  # not that event's review
    status, body = http.undo(can, second["id"], token)
    assert status == 200 and body == {"undone": second["id"], "review": first}
    assert reviewed_labels(db) == {can: "glass"}
    assert http.undo(can, second["id"], token)[0] == 404  # gone
    assert http.undo(can, first["id"], token) == (200, {"undone": first["id"], "review": None})
    assert reviewed_labels(db) == {}  # the bin's own label again, as if nobody had tapped
    assert [e["id"] for e in http.json("/api/events?filter=unreviewed")["events"]] == [
        e.id for e in events[::-1]
    ]

    old = http.label(glass, "can", token)[1]["review"]
    db.execute("UPDATE reviews SET at = '2026-01-01T00:00:00.000+00:00' WHERE id = ?", (old["id"],))
    db.commit()
    status, body = http.undo(glass, old["id"], token)
    assert status == 409 and "too old" in body["error"]
    for bad in ("12", None, 0, True, 2**70):
        status, body = http.undo(glass, bad, token)
        assert status == 400 and "review: expected" in body["error"]
    db.close()


def test_counts_per_filter(sorted_bin):
    b, http, events, token = sorted_bin
    assert http.json("/api/counts") == {
        "all": 3,
        "uncertain": 1,
        "wrong": 0,
        "unreviewed": 3,
        "capped": False,
    }
    http.label(events[0].id, "glass", token)  # wrong
    http.label(events[1].id, "glass", token)  # right
    assert http.json("/api/counts") == {
        "all": 3,
        "uncertain": 1,
        "wrong": 1,
        "unreviewed": 1,
        "capped": False,
    }
    for name in queries.FILTERS:  # each count is what the filter lists
        assert http.json("/api/counts")[name] == len(http.json(f"/api/events?filter={name}")["events"])
    db = queries.connect(b.config.paths.events_db)  # the newest two only: glass (right), grey
    try:
        assert queries.count_events(db, window=2) == {
            "all": 2,
            "uncertain": 1,
            "wrong": 0,
            "unreviewed": 1,
            "capped": True,
        }
        assert queries.count_events(db, window=3)["capped"] is False
    finally:
        db.close()


def test_a_new_token_counts_at_once_and_none_turns_writes_off(sorted_bin):
    b, http, events, token = sorted_bin
    path = b.config.web.token_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    status, body = http.label(events[0].id, "glass", token)
    assert status == 401 and "smartbin web token" in body["error"]
    fresh = new_token(b.config)
    assert http.label(events[0].id, "glass", token)[0] == 401
    assert http.label(events[0].id, "glass", fresh)[0] == 200


def test_metrics_parse_as_prometheus_text(sorted_bin):
    b, http, events, token = sorted_bin
    http.label(events[0].id, "glass", token)
    status, headers, body = http.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    items = {
        (s.labels["label"], s.labels["compartment"]): s.value for s in families["smartbin_items"].samples
    }
    assert items == {("can", "can"): 1, ("glass", "glass"): 1, ("can", "other"): 1}
    for name in ("smartbin_inference_seconds", "smartbin_cycle_seconds"):
        samples = {(s.name, s.labels.get("le")): s.value for s in families[name].samples}
        assert samples[(f"{name}_count", None)] == 3 == samples[(f"{name}_bucket", "+Inf")]
        buckets = [v for (n, _), v in samples.items() if n.endswith("_bucket")]
        assert buckets == sorted(buckets)  # cumulative
    assert families["smartbin_empty_closings"].samples[0].value == 0
    assert families["smartbin_item_faults"].samples == []
    assert families["smartbin_model_info"].samples[0].labels == {"version": b.daemon.model_version}
    (reviews,) = [s for s in families["smartbin_reviews"].samples if s.name == "smartbin_reviews_total"]
    assert reviews.value == 1


def test_counts_include_the_log_before_the_daemon_started(make_bin, tmp_path):
    config = web_config(tmp_path)
    log = EventLog(config.paths.events_db)
    now = datetime.now(UTC)
    for ts, compartment in ((now - timedelta(days=2), "can"), (now, "glass"), (now, None)):
        log.record(
            ItemEvent(
                ts.isoformat(timespec="milliseconds"), "can", 0.9, {}, compartment, "sorted", "m", 1, 1, 1, 1
            )
        )
    log.close()
    observers = make_observers(config)
    with make_bin("red", config=config, observers=observers) as b:
        b.item()
        page = page_of(observers[0])
        counts = wait_for_items(page, 1)["counts"]
        assert page.json("/api/events/1/photo", expect=404) == {"error": "event 1: no photo was saved"}
    assert counts["total"] == {"can": 2, "glass": 1, "plastic": 0, "other": 0, "none": 1}
    assert counts["today"] == {"can": 1, "glass": 1, "plastic": 0, "other": 0, "none": 1}


def test_an_event_lists_the_box_of_the_empty_check(tmp_path):
    log = EventLog(tmp_path / "events.db")
    log.record(
        ItemEvent("ts", "can", 0.9, {"can": 0.9}, "can", "sorted", "m", 1, 1, 1, 1, box=(5, 6, 70, 80))
    )
    log.close()
    db = queries.connect(tmp_path / "events.db")
    (event,) = queries.list_events(db, limit=5, before=None, filter=None)
    db.close()
    assert event["box"] == [5, 6, 70, 80] and event["scores"] == {"can": 0.9}


def test_an_empty_closing_confirmed_as_empty_is_not_wrong(tmp_path):
    log = EventLog(tmp_path / "events.db")
    confirmed, mistaken = (
        log.record(ItemEvent("ts", None, None, {}, None, "empty", "m", 1, 1, 0, 1)) for _ in "ab"
    )
    add_review(log._db, confirmed, "empty", "test", "now")
    add_review(log._db, mistaken, "can", "test", "now")  # a flat item the empty check missed
    log.close()
    db = queries.connect(tmp_path / "events.db")
    wrong = queries.list_events(db, limit=5, before=None, filter="wrong")
    db.close()
    assert [e["id"] for e in wrong] == [mistaken]


def test_status_counts_the_items_with_a_fault_by_kind(make_bin, tmp_path):
    config = web_config(tmp_path)
    observers = make_observers(config)
    with make_bin("red", "green", config=config, observers=observers, faults={1: "raise"}) as b:
        events = [b.item() for _ in range(2)]
        status = wait_for_items(page_of(observers[0]), 2)
    assert events[0].error.startswith("camera: recovered") and events[1].error is None
    assert status["faults"] == {"camera": 1}


def test_a_port_in_use_leaves_the_bin_sorting(make_bin, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = web_config(tmp_path, web={"listen": f"127.0.0.1:{taken.getsockname()[1]}"})
        observers = make_observers(config)
        with make_bin("red", config=config, observers=observers) as b:
            assert b.item().compartment == "can"
            web = b.daemon.status()["observers"]["web"]
    assert web["url"] is None and "cannot listen on 127.0.0.1:" in web["error"]


def test_the_page_is_small_and_loads_nothing_from_elsewhere(sorted_bin):
    _, http, _, _ = sorted_bin
    status, headers, page = http.request("GET", "/")
    assert status == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    total = len(page)
    for asset in ("/static/app.js", "/static/style.css"):
        status, _, body = http.request("GET", asset)
        assert status == 200
        total += len(body)
        page += body
    assert b"http://" not in page and b"https://" not in page
    assert total < 32_000
    assert http.request("GET", "/static/../observer.py")[0] == 404


def test_photos_worth_keeping_are_pruned_last(tmp_path):
    log = EventLog(tmp_path / "events.db")
    store = ImageStore(tmp_path / "img", max_count=3, max_mb=100, events_db=log.path)
    rgb = np.zeros((8, 8, 3), np.uint8)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    names = []
    for i, reason in enumerate(["sorted", "low_confidence", "sorted"]):
        path = store.save(rgb, start + timedelta(seconds=i), "can")
        event = ItemEvent("ts", "can", 0.9, {}, "can", reason, "m", 1, 1, 1, 1, image_path=str(path))
        log.record(event)
        names.append(path.name)
    add_review(log._db, 3, "glass", "test", "now")  # the third was reviewed

    for i in range(3, 6):  # three confident ones: each pushes out the oldest plain photo
        names.append(store.save(rgb, start + timedelta(seconds=i), "can").name)
        log.record(ItemEvent("ts", "can", 0.9, {}, "can", "sorted", "m", 1, 1, 1, 1, image_path=names[-1]))
    kept = sorted(p.name for p in store.directory.iterdir())
    assert kept == [names[1], names[2], names[5]]  # uncertain, reviewed, and the newest
    assert store.count == 3
    log.close()


def test_without_the_event_log_pruning_is_oldest_first(tmp_path):
    store = ImageStore(tmp_path / "img", max_count=2, max_mb=100, events_db=tmp_path / "absent.db")
    rgb = np.zeros((8, 8, 3), np.uint8)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    names = [store.save(rgb, start + timedelta(seconds=i), "can").name for i in range(3)]
    assert sorted(p.name for p in store.directory.iterdir()) == names[1:]


def connect_from(source: str, http: Http) -> socket.socket:
    """A connection to the page from ``source``: Linux answers all of 127/8 on loopback, so
    127.0.0.2 is another client on this machine."""
    address = urllib.parse.urlsplit(http.base)
    sock = socket.socket()
    try:
        sock.bind((source, 0))
    except OSError as exc:
        sock.close()
        pytest.skip(f"cannot connect from {source}: {exc}")
    sock.connect((address.hostname, address.port))
    return sock


def closed_by_the_server(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of ``socks`` that the server closes within ``timeout`` without answering."""
    closed: list[socket.socket] = []
    open_ = list(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(open_, [], [], max(0.0, deadline - time.monotonic()))
        for sock in readable:
            with contextlib.suppress(ConnectionResetError):  # it closed before reading what came
                assert sock.recv(1024) == b"", "the server answered"
            open_.remove(sock)
            closed.append(sock)
    return closed


def test_one_address_holding_many_connections_leaves_the_page_answering(sorted_bin):
    """120 idle connections once held waitress's 100 slots for its 120 s channel timeout."""
    _, http, _, _ = sorted_bin
    idle = [connect_from("127.0.0.2", http) for _ in range(120)]
    slow = [connect_from("127.0.0.3", http) for _ in range(20)]
    try:
        for sock in slow:
            with contextlib.suppress(OSError):  # one past the limit may be closed already
                sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: bin\r\n")  # and never the end
        start = time.monotonic()
        assert http.json("/healthz")["ok"] is True
        assert http.json("/api/status")["items"] == 3
        assert time.monotonic() - start < 2  # it waited for no timeout
        assert len(closed_by_the_server(idle, 2)) == 120 - BIN_LIMITS.per_client
        assert len(closed_by_the_server(slow, 0.5)) == 20 - BIN_LIMITS.per_client
    finally:
        for sock in idle + slow:
            sock.close()


def test_clients_from_many_addresses_filling_every_place_leave_one_for_the_next(sorted_bin):
    """waitress stops accepting at 100 connections; the one that waited longest makes room."""
    _, http, _, _ = sorted_bin
    idle = [connect_from(f"127.0.0.{10 + i % 12}", http) for i in range(110)]  # 9 or 10 each
    try:
        start = time.monotonic()
        assert http.json("/healthz")["ok"] is True
        assert time.monotonic() - start < 2
        closed = closed_by_the_server(idle, 1)
        assert 10 <= len(closed) < 20 and set(closed) == set(idle[: len(closed)])  # the oldest
    finally:
        for sock in idle:
            sock.close()


def test_a_request_that_trickles_in_or_never_comes_is_cut_off(make_bin, tmp_path):
    """100 clients sending a byte a second held the page past waitress's channel timeout."""
    config = web_config(tmp_path)
    web = WebObserver(config, Limits(request_deadline_s=1.0, idle_timeout_s=2))
    with make_bin("red", config=config, observers=[web]):
        http = page_of(web)
        silent = connect_from("127.0.0.2", http)
        trickle = connect_from("127.0.0.2", http)
        start = time.monotonic()
        cut = None
        for byte in b"GET /healthz HTTP/1.1\r\nHost: bin\r\nX-Slow: " + b"a" * 100:
            if closed_by_the_server([trickle], 0.1):
                cut = time.monotonic() - start
                break
            trickle.send(bytes([byte]))
        assert cut is not None and 1.0 <= cut < 3.5  # the deadline, then at most 2 maintenance passes
        assert closed_by_the_server([silent], 5) and 2.0 <= time.monotonic() - start < 5.0
        assert http.json("/healthz")["ok"] is True
        silent.close()
        trickle.close()


def test_headers_and_bodies_past_the_limits_get_431_and_413(sorted_bin):
    _, http, events, token = sorted_bin
    assert http.request("GET", "/healthz", headers={"X-Big": "a" * MAX_HEADER_BYTES})[0] == 431
    auth = {"Authorization": f"Bearer {token}"}
    body = b'{"label": "glass"' + b" " * MAX_BODY_BYTES + b"}"
    assert http.request("POST", f"/api/events/{events[0].id}/label", body, auth)[0] == 413


def test_the_pages_threads_run_nicer_than_the_bin(sorted_bin):
    bin_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    web = {
        t.name: t.native_id for t in threading.enumerate() if t.name.startswith(("waitress-", "smartbin-web"))
    }
    assert sorted(web) == ["smartbin-web", "smartbin-web-tally", *(f"waitress-{n}" for n in range(4))]
    for native_id in web.values():
        assert os.getpriority(os.PRIO_PROCESS, native_id) == min(19, bin_niceness + NICENESS)


def test_lowering_a_threads_priority_leaves_the_others(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")  # the systemd unit's system call filter

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = []
    thread = threading.Thread(
        target=lambda: (
            lower_priority(),
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
        )
    )
    thread.start()
    thread.join()
    assert seen == [min(19, before + NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    monkeypatch.setattr(os, "setpriority", refuse)
    lower_priority()  # refused: nothing changes, nothing raised
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_a_kept_simulation_state_dir_keeps_its_token(tmp_path):
    config = simulation_config(
        fast_config(tmp_path), model=None, fast=True, state_dir=tmp_path / "sim", images=tmp_path
    )
    first, files = with_web(config, "127.0.0.1:0", tmp_path / "no-bin-token")
    own = tmp_path / "sim" / "web-token"
    token = own.read_text().strip()
    assert files == (tmp_path / "no-bin-token", own)  # the bin's first, once this user can read it
    assert first.images.save and first.web.listen == "127.0.0.1:0"
    with_web(config, "127.0.0.1:0", tmp_path / "no-bin-token")
    assert own.read_text().strip() == token


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: None, "no token file"),
        (lambda p: p.mkdir(), "is a directory"),
        (os.mkfifo, "is not a regular file"),  # reading it would wait for a writer forever
        (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),  # it would fill the memory
        (lambda p: p.write_text("x" * 10_000), "holds more than a token"),
        (lambda p: p.write_bytes(b"\xff" * 32), "not ASCII"),
        (lambda p: p.write_text("short\n"), "holds no token"),
        (
            lambda p: (p.write_text("x" * 32), p.chmod(0o644)),
            r"permissions 0644 for .* are too open .* chmod 600",
        ),
        (lambda p: (p.write_text("x" * 32), p.chmod(0o620)), r"permissions 0620 for"),
    ],
    ids=[
        "missing",
        "a folder",
        "a pipe",
        "a device",
        "too long",
        "not ASCII",
        "too short",
        "readable",
        "writable",
    ],
)
def test_a_token_file_without_a_token_says_why_at_once(tmp_path, make, says):
    from smartbin.device.errors import SmartbinError
    from smartbin.device.home.web.token import read_token

    path = tmp_path / "web-token"
    make(path)
    with pytest.raises(SmartbinError, match=says):
        read_token(path)


def test_a_flood_of_queue_warnings_is_one_line_per_interval(caplog, monkeypatch):
    """500 clients at once made waitress warn "Task queue depth" 8,456 times in 10 s."""
    from waitress.utilities import queue_logger

    from smartbin.device.home.web import log_limit

    clock = iter([100.0] * 999 + [131.0])
    monkeypatch.setattr(log_limit.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(queue_logger, "filters", [])
    log_limit.limit_queue_warnings()
    log_limit.limit_queue_warnings()  # a second page in the same process adds no second filter
    with caplog.at_level(logging.WARNING, logger=log_limit.QUEUE_LOGGER):
        for depth in range(1000):
            queue_logger.warning("Task queue depth is %d", depth)
    lines = [r.getMessage() for r in caplog.records if r.name == log_limit.QUEUE_LOGGER]
    assert lines == [
        "Task queue depth is 0",
        "Task queue depth is 999 (998 more such lines in the last 31 s)",
    ]


@pytest.mark.parametrize(
    ("error", "kinds"),
    [
        ("servo: stuck; image: disk full", ["servo", "image"]),
        ("classify: bad input; expected 3 channels; image: disk full", ["classify", "image"]),
        ("camera: 0 of 3 frames (timeout; device busy)", ["camera"]),
        ("something odd; other: x", ["unknown"]),
        (None, []),
    ],
)
def test_each_fault_counts_once_whatever_its_message_holds(error, kinds):
    from smartbin.device.home.web.tally import fault_kinds

    assert fault_kinds(error) == kinds


# --- aiming the camera: snapshots, calibration and a test item, all on the daemon's thread ---------


@pytest.fixture
def aimed_bin(factory, tmp_path: Path):
    """A running bin with its page, a live stage camera showing a grey chamber, a light on pin 5,
    servos that hold an item for 0.5 s, and the lid open."""
    config = web_config(tmp_path, light={"pin": 5}, sorting={"hold_s": 0.5})
    token = new_token(config)
    camera = StageCamera("grey", factory.pin(5))
    observers = make_observers(config)
    with Bin(config, factory, camera, observers=observers) as b:
        b.lid_pin.drive_high()
        yield b, camera, page_of(observers[0]), {"Authorization": f"Bearer {token}"}


def decoded(body: bytes) -> np.ndarray:
    """A JPEG answer as RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_a_snapshot_is_taken_by_the_daemons_thread_with_the_light_on(aimed_bin):
    b, camera, http, auth = aimed_bin
    status, headers, body = http.request("GET", "/api/camera/snapshot", headers=auth)
    assert (
        status == 200 and headers["Content-Type"] == "image/jpeg" and headers["Cache-Control"] == "no-store"
    )
    assert datetime.fromisoformat(headers["X-Taken"]) <= datetime.now(UTC)
    frame = decoded(body)
    assert frame.shape == (48, 64, 3) and abs(frame.mean() - 128) < 3
    assert camera.captures == [(b.thread.name, True)]  # never a page thread's, and lit
    assert not b.factory.pin(5).state  # off again

    status, _, body = http.request("GET", "/api/camera/snapshot")
    assert status == 401 and "a valid token is needed" in json.loads(body)["error"]
    assert len(camera.captures) == 1  # refused before the camera was asked


def test_a_snapshot_asked_during_an_item_waits_for_it_or_says_busy(aimed_bin, monkeypatch):
    from smartbin.device.home.web import app

    b, camera, http, auth = aimed_bin
    monkeypatch.setattr(app, "SNAPSHOT_WAIT_S", 0.2)  # less than the item's 0.5 s hold
    b.lid_pin.drive_low()
    time.sleep(0.1)  # the item has begun
    status, _, body = http.request("GET", "/api/camera/snapshot", headers=auth)
    assert (status, json.loads(body)) == (503, {"error": "the bin is busy with an item; try again"})
    assert len(camera.captures) == 3  # the item's frames only
    b.events.get(timeout=10)

    monkeypatch.setattr(app, "SNAPSHOT_WAIT_S", 3.0)
    b.lid_pin.drive_high()
    b.lid_pin.drive_low()
    time.sleep(0.1)
    status, _, _ = http.request("GET", "/api/camera/snapshot", headers=auth)  # waits for the item
    assert status == 200 and not b.events.empty()
    assert [thread for thread, _ in camera.captures] == [b.thread.name] * 7


def test_calibrate_from_the_page_stores_the_reference_the_bin_then_uses(aimed_bin):
    b, camera, http, auth = aimed_bin
    assert "no empty reference yet" in http.json("/api/camera/reference", expect=404)["error"]
    status, _, body = http.request("POST", "/api/camera/calibrate", {})
    assert status == 401 and not camera.captures
    status, _, body = http.request("POST", "/api/camera/calibrate", {}, auth)
    assert (status, json.loads(body)["error"]) == (
        409,
        "close the lid first: an open lid lets other light in, or a hand",
    )

    b.lid_pin.drive_low()  # closing the lid is an item: the chamber as it is, sorted without a reference
    assert b.events.get(timeout=10).reason != "empty"
    camera.scene = "black"
    status, _, body = http.request("POST", "/api/camera/calibrate", {}, auth)
    assert status == 409 and json.loads(body)["error"].startswith(
        "frame 1 is too dark (mean brightness 0 of 255"
    )
    assert not b.config.paths.state_dir.joinpath("empty-reference.json").exists()

    camera.scene = "grey"
    status, _, body = http.request("POST", "/api/camera/calibrate", {}, auth)
    reference = json.loads(body)["empty_reference"]
    assert status == 200 and reference["set"] and reference["problem"] is None
    assert [thread for thread, lit in camera.captures[3:]] == [b.thread.name] * 10  # 5 dark, 5 grey
    assert all(lit for _, lit in camera.captures)
    assert http.json("/api/status")["empty_reference"]["taken"] == reference["taken"]
    status, headers, body = http.request("GET", "/api/camera/reference")
    assert status == 200 and headers["X-Taken"] == reference["taken"] and abs(decoded(body).mean() - 128) < 3

    b.lid_pin.drive_high()
    b.lid_pin.drive_low()
    assert b.events.get(timeout=10).reason == "empty"  # the next item is checked against it


def test_a_test_item_is_judged_but_neither_moved_nor_recorded(aimed_bin, monkeypatch):
    b, camera, http, auth = aimed_bin
    assert http.request("POST", "/api/camera/test", {})[0] == 401
    moves: list[str] = []
    monkeypatch.setattr(b.daemon.sorter, "move", moves.append)
    camera.scene = "red"
    status, _, body = http.request("POST", "/api/camera/test", {}, auth)
    result = json.loads(body)
    assert status == 200, result
    assert (result["label"], result["compartment"], result["reason"], result["error"]) == (
        "can",
        "can",
        "sorted",
        None,
    )
    assert result["confidence"] > 0.9 and result["box"] is None  # no reference: no box
    assert result["photo"].startswith("data:image/jpeg;base64,")
    photo = decoded(base64.b64decode(result["photo"].split(",", 1)[1]))
    assert photo[..., 0].mean() > 150 and photo[..., 1].mean() < 80
    assert [thread for thread, _ in camera.captures] == [b.thread.name] * 3
    assert moves == [] and b.daemon.items == 0 and b.events.empty()


def test_a_camera_without_a_live_picture_says_so(sorted_bin):
    _, http, _, token = sorted_bin
    status, _, body = http.request(
        "GET", "/api/camera/snapshot", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 409 and json.loads(body)["error"].endswith(
        "shows one photo per item: it has no live picture"
    )
