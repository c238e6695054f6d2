"""Signing in with a one-time link (``smartbin web link``) against a running page: the code goes
once, never into a URL the server sees, and the cookie it sets relabels only from the page itself."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sqlite3
import stat
import urllib.parse
import wsgiref.util
from pathlib import Path

import pytest

from smartbin.device.commands.simulate import simulate, with_web
from smartbin.device.config import Config
from smartbin.device.home.observer_setup import make_observers
from smartbin.device.home.web.signin import COOKIE, code_path, create_code, link_url, make_link
from smartbin.device.home.web.token import create_token
from smartbin.device.records.events import reviewed_labels

from ..conftest import MODELS, fast_config, write_image
from .web_client import Http, new_token, page_of, wait_for_items, web_config


@pytest.fixture
def page(make_bin, tmp_path: Path):
    """A running bin with its page and a token, after one item (red: can)."""
    config = web_config(tmp_path)
    new_token(config)
    observers = make_observers(config)
    with make_bin("red", config=config, observers=observers) as b:
        event = b.item()
        http = page_of(observers[0])
        wait_for_items(http, 1)
        yield config, http, event.id


def open_link(http: Http, config: Config) -> tuple[str, str]:
    """What a browser does with a new link: GET the part before '#', POST the code. (link, code)"""
    address = urllib.parse.urlsplit(http.base)
    link = make_link(config.web.token_file, address.hostname, address.port).url
    before, _, code = link.partition("#")
    assert before == http.base + "/signin" and len(code) >= 22
    status, headers, body = http.request("GET", urllib.parse.urlsplit(before).path)
    assert status == 200 and b'src="/signin.js"' in body and headers["Cache-Control"] == "no-store"
    return link, code


def sign_in(http: Http, code: str, **headers: str) -> tuple[int, dict[str, str], dict]:
    status, answer, body = http.request("POST", "/api/signin", {"code": code}, headers)
    return status, answer, json.loads(body)


def cookie_of(headers: dict[str, str]) -> str:
    return headers["Set-Cookie"].split(";")[0]


def test_a_link_signs_in_once(page):
    config, http, _ = page
    _, code = open_link(http, config)
    assert stat.S_IMODE(code_path(config.web.token_file).stat().st_mode) == 0o600
    status, headers, body = sign_in(http, code)
    assert status == 200 and body == {"signed_in": True}
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in headers["Set-Cookie"].split(";")}
    assert cookie_of(headers).startswith(f"{COOKIE}=")
    assert {"httponly", "path", "samesite", "max-age"} <= set(attributes) and "secure" not in attributes
    assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"] == "Path=/"
    assert int(attributes["max-age"].split("=")[1]) >= 30 * 86400  # long-lived
    status, headers, body = sign_in(http, code)
    assert status == 401 and "not valid" in body["error"] and "smartbin web link" in body["error"]
    assert "Set-Cookie" not in headers and not code_path(config.web.token_file).exists()


def test_a_newer_link_replaces_an_unused_one_and_a_wrong_code_signs_nobody_in(page):
    config, http, _ = page
    _, first = open_link(http, config)
    _, second = open_link(http, config)
    assert sign_in(http, first)[0] == 401
    assert sign_in(http, second[:-1])[0] == 401
    for bad in ("", "\ud800", 42):
        assert sign_in(http, bad)[0] == 400, bad
    assert sign_in(http, second)[0] == 200


def test_an_expired_link_is_refused(page):
    config, http, _ = page
    code, _ = create_code(config.web.token_file, life_s=-1)
    status, headers, body = sign_in(http, code)
    assert status == 401 and "expired" in body["error"] and "Set-Cookie" not in headers


def test_the_code_never_reaches_a_log_or_a_url_the_server_sees(page, caplog):
    config, http, _ = page
    caplog.set_level(logging.DEBUG)  # every logger, waitress's and bottle's included
    link, code = open_link(http, config)
    assert urllib.parse.urlsplit(link).fragment == code  # the fragment: never sent by a browser
    sign_in(http, code)
    refused = sign_in(http, code)[2]["error"]
    assert code not in refused
    assert code not in caplog.text and "/signin" not in caplog.text.replace("/signin.js", "")


def test_the_cookie_relabels_from_the_page_only_and_a_new_token_signs_it_out(page):
    config, http, event_id = page
    _, code = open_link(http, config)
    cookie = {"Cookie": cookie_of(sign_in(http, code)[1])}
    host = urllib.parse.urlsplit(http.base).netloc
    same = cookie | {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}

    def label(headers: dict[str, str], label: str = "glass") -> tuple[int, dict]:
        status, _, body = http.request("POST", f"/api/events/{event_id}/label", {"label": label}, headers)
        return status, json.loads(body)

    assert http.request("GET", "/api/status", headers=cookie)[0] == 200
    assert json.loads(http.request("GET", "/api/status", headers=cookie)[2])["signed_in"] is True
    assert http.json("/api/status")["signed_in"] is False
    status, body = label(same)
    assert status == 200 and body["review"]["who"] == "web 127.0.0.1"
    assert label(cookie, "can")[0] == 200  # a browser too old to name the site: SameSite=Strict must do
    for foreign in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": f"http://{host}"},
    ):
        status, body = label(cookie | foreign, "paper")
        assert status == 403 and "another site" in body["error"], foreign
    for forged in (f"9999999999.{'0' * 64}", "9" * 5000, "", "x.y"):  # 5000 digits: past int()'s limit
        assert label({"Cookie": f"{COOKIE}={forged}"})[0] == 401, forged
    assert sign_in(http, "x" * 22, Origin="http://evil.example")[0] == 403

    create_token(config.web.token_file, force=True)  # rotating the token signs every browser out
    status, body = label(same, "paper")
    assert status == 401 and "smartbin web link" in body["error"]
    assert json.loads(http.request("GET", "/api/status", headers=cookie)[2])["signed_in"] is False
    with contextlib.closing(sqlite3.connect(config.paths.events_db)) as db:
        assert reviewed_labels(db) == {event_id: "can"}


def test_a_token_made_while_a_simulation_serves_counts_at_once(make_bin, tmp_path):
    """The simulation's own token at first; `smartbin web token` for the bin as it runs: that one."""
    bin_token = tmp_path / "bin" / "web-token"
    config, token_files = with_web(
        web_config(tmp_path), "127.0.0.1:0", bin_token
    )  # the fixture config's state dir stands for the simulation's
    own = config.paths.state_dir / "web-token"
    assert token_files == (bin_token, own) and own.is_file() and not bin_token.exists()
    observers = make_observers(config, token_files)
    with make_bin("red", config=config, observers=observers) as b:
        event = b.item()
        http = page_of(observers[0])
        wait_for_items(http, 1)
        assert http.label(event.id, "glass", own.read_text().strip())[0] == 200
        made = create_token(bin_token)  # as `smartbin web token` does
        assert http.label(event.id, "glass", made)[0] == 200
        assert http.label(event.id, "glass", own.read_text().strip())[0] == 401


def test_the_simulation_gives_the_link_before_the_first_item(tmp_path):
    for i, colour in enumerate(("red", "green")):
        write_image(tmp_path / "photos" / f"{i}-{colour}.png", colour)
    heard: list[object] = []
    simulate(
        fast_config(tmp_path),
        images=tmp_path / "photos",
        model=MODELS / "colour3-int8",
        fast=True,
        state_dir=tmp_path / "sim",
        web="127.0.0.1:0",
        on_page=lambda page, link: heard.append((page, link)),
        on_item=heard.append,
    )
    assert len(heard) == 3 and isinstance(heard[0], tuple)
    page, link = heard[0]
    assert link.url.startswith(page + "signin#") and link.note is None


def test_a_page_on_every_address_links_to_this_machines_lan_address(monkeypatch):
    from smartbin.device.home.web import signin

    monkeypatch.setattr(signin, "lan_address", lambda: "192.168.1.23")
    assert link_url("0.0.0.0", 8080, "c0de") == ("http://192.168.1.23:8080/signin#c0de", None)
    monkeypatch.setattr(signin, "lan_address", lambda: None)
    url, note = link_url("::", 8080, "c0de")
    assert url == "http://HOST:8080/signin#c0de" and "replace HOST" in note
    assert link_url("::1", 80, "c0de")[0] == "http://[::1]:80/signin#c0de"


def test_a_terminal_gets_the_links_qr_code_and_a_pipe_the_link_alone():
    from smartbin.device.commands.web import show_link
    from smartbin.device.home.web.signin import Link

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    link = Link("http://192.168.1.23:8080/signin#" + "c" * 22, expires=0.0, note=None)
    piped, terminal = io.StringIO(), Terminal()
    show_link(link, piped)
    show_link(link, terminal)
    assert piped.getvalue().splitlines()[0] == link.url and "█" not in piped.getvalue()
    lines = terminal.getvalue().splitlines()
    qr = [line for line in lines if "▄" in line or "▀" in line]
    assert lines[0] == link.url and len(qr) >= 12 and "until" in lines[-1]  # 2 rows a line


def test_over_https_the_cookie_is_secure(tmp_path):
    """As behind a TLS proxy that waitress trusts (wsgi.url_scheme https)."""
    from smartbin.device.home.web.app import make_app

    config = web_config(tmp_path)
    new_token(config)
    code, _ = create_code(config.web.token_file)
    app = make_app(config, read=lambda: ({}, {}), on_review=lambda review: None)
    body = json.dumps({"code": code}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/signin",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "https",
    }
    wsgiref.util.setup_testing_defaults(environ)
    answers = []
    app(environ, lambda line, headers, exc_info=None: answers.append((line, dict(headers))))
    [(line, headers)] = answers
    assert line == "200 OK" and "; secure" in headers["Set-Cookie"].lower()
