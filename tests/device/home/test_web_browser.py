"""The review page in a real headless browser: Debian's chromium and chromium-driver, driven by
selenium. Skipped when they are not installed, unless SMARTBIN_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartbin.device.home.observer_setup import make_observers
from smartbin.device.records.events import EventLog, ItemEvent, reviewed_labels

from .web_client import new_token, page_of, wait_for_items, web_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PAGE_BUDGET_BYTES = 300_000  # the first load, thumbnails included
WAIT_S = 10


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("SMARTBIN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(
                "chromium is not installed but SMARTBIN_REQUIRE_CHROMIUM=1 (apt install chromium chromium-driver)"
            )
        pytest.skip("needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="smartbin-chromium-") as profile:
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=390,844",  # a phone
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def test_a_relabel_on_the_page_reaches_the_event_log(make_bin, tmp_path: Path, browser) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    config = web_config(tmp_path)
    token = new_token(config)
    observers = make_observers(config)
    # a card is redrawn when its item changes: look again then
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    with make_bin("red", "green", "grey", config=config, observers=observers) as b:
        events = [b.item() for _ in range(3)]
        page = page_of(observers[0])
        wait_for_items(page, 3)
        browser.get(page.base + "/")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items .item")) == 3)
        wait.until(
            lambda d: d.execute_script(
                "return [...document.images].every((img) => !img.src || (img.complete && img.naturalWidth > 0))"
            )
        )
        assert browser.find_element(By.ID, "model").text == b.daemon.model_version
        assert not browser.find_element(By.ID, "more").is_displayed()  # three items: nothing older
        assert browser.find_element(By.ID, "reference").text.startswith("not set: run 'smartbin calibrate'")
        assert browser.find_element(By.ID, "faults").text == "none since start"
        rows = {
            r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[2].text
            for r in browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
        }
        assert rows == {"can": "1", "glass": "1", "plastic": "0", "other": "1", "none": "0"}

        # what the first load cost, and that nothing came from elsewhere
        loads = browser.execute_script(
            "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
            ".map((e) => [e.name, e.transferSize])"
        )
        assert all(name.startswith(page.base) for name, _ in loads), loads
        assert sum(size for _, size in loads) <= PAGE_BUDGET_BYTES, loads
        # usable on a phone: nothing wider than the screen
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

        can = browser.find_element(By.CSS_SELECTOR, f'.item[data-id="{events[0].id}"]')
        assert "uncertain" in browser.find_element(
            By.CSS_SELECTOR, f'.item[data-id="{events[2].id}"]'
        ).get_attribute("class")
        can.find_element(By.CSS_SELECTOR, 'button[data-label="glass"]').click()
        prompt = wait.until(expected_conditions.alert_is_present())
        prompt.send_keys(token)
        prompt.accept()
        wait.until(
            lambda d: (
                "reviewed: glass"
                in d.find_element(By.CSS_SELECTOR, f'.item[data-id="{events[0].id}"] .review').text
            )
        )
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass"}

        # the token is kept: the next relabel asks nothing
        other = browser.find_element(By.CSS_SELECTOR, f'.item[data-id="{events[2].id}"]')
        other.find_element(By.CSS_SELECTOR, 'button[data-label="not_trash"]').click()
        wait.until(
            lambda d: (
                "reviewed: not trash"
                in d.find_element(By.CSS_SELECTOR, f'.item[data-id="{events[2].id}"] .review').text
            )
        )
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass", events[2].id: "not_trash"}

        browser.find_element(By.CSS_SELECTOR, 'button[data-filter="wrong"]').click()
        wait.until(
            lambda d: (
                [e.get_attribute("data-id") for e in d.find_elements(By.CSS_SELECTOR, "#items .item")]
                == [str(events[2].id), str(events[0].id)]
            )
        )


def test_an_empty_closing_shows_as_empty_not_as_a_missing_frame(make_bin, tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    config = web_config(tmp_path)
    log = EventLog(config.paths.events_db)
    ts = "2026-12-01T10:00:00.000+00:00"
    empty = log.record(ItemEvent(ts, None, None, {}, None, "empty", "m", 1, 1, 0, 1))
    black = log.record(
        ItemEvent(ts, None, None, {}, "other", "capture:black", "m", 1, 1, 0, 1, error="capture: black")
    )
    log.close()
    observers = make_observers(config)
    with make_bin("red", config=config, observers=observers):
        browser.get(page_of(observers[0]).base + "/")
        WebDriverWait(browser, WAIT_S).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items .item")) == 2
        )
        labels = {
            int(card.get_attribute("data-id")): card.find_element(By.CSS_SELECTOR, ".label").text
            for card in browser.find_elements(By.CSS_SELECTOR, "#items .item")
        }
    assert labels == {empty: "empty", black: "no frame"}


def test_a_sign_in_link_lets_a_phone_relabel_without_the_token(make_bin, tmp_path: Path, browser) -> None:
    import urllib.parse

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    from smartbin.device.home.web.signin import make_link

    config = web_config(tmp_path)
    new_token(config)
    observers = make_observers(config)
    # a card is redrawn when its item changes: look again then
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    with make_bin("red", config=config, observers=observers) as b:
        event = b.item()
        page = page_of(observers[0])
        wait_for_items(page, 1)
        address = urllib.parse.urlsplit(page.base)
        link = make_link(config.web.token_file, address.hostname, address.port).url
        browser.get(link)
        wait.until(lambda d: d.current_url == page.base + "/")  # signed in, then sent to the page
        [cookie] = browser.get_cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
        assert link.partition("#")[2] not in cookie["value"]
        glass = f'.item[data-id="{event.id}"] button[data-label="glass"]'
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, glass).click() or True)  # no prompt
        wait.until(lambda d: "reviewed: glass" in d.find_element(By.CSS_SELECTOR, ".item .review").text)
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {event.id: "glass"}

        browser.get(link)  # a second time: refused, saying what to do
        wait.until(lambda d: "smartbin web link" in d.find_element(By.ID, "message").text)
        assert browser.current_url == page.base + "/signin"  # the code left the address bar
