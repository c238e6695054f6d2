"""The review page in a real headless browser: Debian's chromium and chromium-driver, driven by
selenium, as a phone (390x844 CSS pixels at twice the density). Skipped when they are not
installed, unless SMARTBIN_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartbin.device.home.observer_setup import make_observers
from smartbin.device.records.events import EventLog, ItemEvent, reviewed_labels

from ...required import missing
from .web_client import StageCamera, new_token, page_of, wait_for_items, web_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PAGE_BUDGET_BYTES = 300_000  # the first load, thumbnails included
WAIT_S = 10
PHONE = {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": True, "mobile": True}
TAP_PX = 44  # the smallest tap target (Apple's and Google's guidelines: 44 pt, 48 dp)


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing(
            "needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)", "CHROMIUM"
        )
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
        ):
            options.add_argument(flag)
        # a phone's screen (--window-size alone stops at 500 CSS pixels wide, at 1x)
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def waiting(browser) -> object:
    """A wait that looks again for a card redrawn meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])


def open_page(browser, page, items: int) -> None:
    """The page with ``items`` cards, their thumbnails loaded."""
    from selenium.webdriver.common.by import By

    browser.get(page.base + "/")
    wait = waiting(browser)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items .item")) == items)
    wait.until(
        lambda d: d.execute_script(
            "return [...document.images].every((img) => !img.src || (img.complete && img.naturalWidth > 0))"
        )
    )


def card_of(browser, event_id: int):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'.item[data-id="{event_id}"]')


def test_a_relabel_on_the_page_reaches_the_event_log(make_bin, tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    config = web_config(tmp_path)
    token = new_token(config)
    observers = make_observers(config)
    wait = waiting(browser)
    with make_bin("red", "green", "grey", config=config, observers=observers) as b:
        events = [b.item() for _ in range(3)]
        page = page_of(observers[0])
        wait_for_items(page, 3)
        open_page(browser, page, 3)
        # the items first: the status is one line, folded away
        top = browser.execute_script(
            "return document.querySelector('#items .item').getBoundingClientRect().top / innerHeight"
        )
        assert top < 0.3, f"the first item starts at {top:.0%} of the screen"
        assert not browser.find_element(By.ID, "model").is_displayed()
        assert browser.find_element(By.ID, "summary").text == "3 items since start"
        browser.find_element(By.CSS_SELECTOR, "#status summary").click()
        assert browser.find_element(By.ID, "model").text == b.daemon.model_version
        assert not browser.find_element(By.ID, "more").is_displayed()  # three items: nothing older
        assert browser.find_element(By.ID, "reference").text.startswith("not set: run 'smartbin calibrate'")
        assert browser.find_element(By.ID, "faults").text == "none since start"
        rows = {
            r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[2].text
            for r in browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
        }
        assert rows == {"can": "1", "glass": "1", "plastic": "0", "other": "1", "none": "0"}
        browser.find_element(By.CSS_SELECTOR, "#status summary").click()
        assert not browser.find_element(By.ID, "model").is_displayed()

        # what the first load cost, and that nothing came from elsewhere
        loads = browser.execute_script(
            "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
            ".map((e) => [e.name, e.transferSize])"
        )
        assert all(name.startswith(page.base) for name, _ in loads), loads
        assert sum(size for _, size in loads) <= PAGE_BUDGET_BYTES, loads
        # usable on a phone: nothing wider than the screen, every tap target big enough, the
        # labels' buttons all one size (the rarest is not the biggest), the filters counted
        assert browser.execute_script("return [innerWidth, devicePixelRatio]") == [390, 2]
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        small = browser.execute_script(
            "return [...document.querySelectorAll('button, summary')].filter((e) => e.offsetParent)"
            ".map((e) => [e.textContent, e.getBoundingClientRect()])"
            f".filter(([, r]) => r.width < {TAP_PX} || r.height < {TAP_PX})"
        )
        assert small == []
        sizes = {
            (round(b.rect["width"]), round(b.rect["height"]))
            for b in card_of(browser, events[0].id).find_elements(By.CSS_SELECTOR, ".choices button")
        }
        assert len(sizes) == 1, sizes
        filters = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#filters button")]
        assert filters == ["all 3", "uncertain 1", "wrong 0", "not reviewed 3"]
        # thumbnails as sharp as the screen: CSS width x devicePixelRatio, in the bin's 80 px steps
        for img in browser.find_elements(By.CSS_SELECTOR, "#items img"):
            asked = int(img.get_attribute("src").rpartition("?w=")[2])
            needed = img.rect["width"] * 2
            assert needed <= asked < needed + 80 and img.get_property("naturalWidth") == asked
            assert img.value_of_css_property("object-fit") == "contain"  # no crop hides the item

        # a tap on a photo shows the whole of it (64 x 48 here), closed again with a tap
        card_of(browser, events[0].id).find_element(By.CSS_SELECTOR, ".photo").click()
        full = browser.find_element(By.ID, "viewer-photo")
        wait.until(lambda d: full.is_displayed() and full.get_property("naturalWidth") == 64)
        assert full.get_attribute("src") == f"{page.base}/api/events/{events[0].id}/photo"
        zoom = full.value_of_css_property("touch-action")  # pan and pinch-zoom: "manipulation"
        assert zoom in ("auto", "manipulation") or "pinch-zoom" in zoom, zoom
        browser.find_element(By.ID, "viewer-close").click()
        wait.until(lambda d: not d.find_element(By.ID, "viewer").is_displayed())

        uncertain = card_of(browser, events[2].id)
        assert "uncertain" in uncertain.get_attribute("class")
        card_of(browser, events[0].id).find_element(By.CSS_SELECTOR, 'button[data-label="glass"]').click()
        prompt = wait.until(expected_conditions.alert_is_present())
        prompt.send_keys(token)
        prompt.accept()
        wait.until(lambda d: card_of(d, events[0].id).get_attribute("data-state") == "saved")
        assert card_of(browser, events[0].id).find_element(By.CSS_SELECTOR, ".review").text == "saved: glass"
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass"}

        # the token is kept: the next relabel asks nothing
        card_of(browser, events[2].id).find_element(By.CSS_SELECTOR, 'button[data-label="not_trash"]').click()
        wait.until(
            lambda d: (
                card_of(d, events[2].id).find_element(By.CSS_SELECTOR, ".review").text == "saved: not trash"
            )
        )
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass", events[2].id: "not_trash"}
        wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, '#filters [data-filter="wrong"]').text == "wrong 2"
        )

        browser.find_element(By.CSS_SELECTOR, 'button[data-filter="wrong"]').click()
        wait.until(
            lambda d: (
                [e.get_attribute("data-id") for e in d.find_elements(By.CSS_SELECTOR, "#items .item")]
                == [str(events[2].id), str(events[0].id)]
            )
        )


def card_at(browser, x: int, y: int) -> tuple[str, float]:
    """The card under a point of the screen, and where its top is."""
    return tuple(
        browser.execute_script(
            "const card = document.elementFromPoint(arguments[0], arguments[1]).closest('.item');"
            "return [card.dataset.id, card.getBoundingClientRect().top]",
            x,
            y,
        )
    )


def test_new_items_wait_behind_a_bar_and_the_cards_stay_under_the_thumb(
    make_bin, tmp_path: Path, browser
) -> None:
    from selenium.webdriver.common.by import By

    config = web_config(tmp_path)
    observers = make_observers(config)
    wait = waiting(browser)
    with make_bin("red", "green", "grey", "red", config=config, observers=observers) as b:
        events = [b.item() for _ in range(3)]
        page = page_of(observers[0])
        wait_for_items(page, 3)
        open_page(browser, page, 3)
        bar = browser.find_element(By.ID, "new-items")
        assert not bar.is_displayed()
        under_thumb = card_at(browser, 100, 600)
        assert under_thumb[0] != str(events[2].id)  # a card below the first
        newest = b.item()
        wait.until(lambda d: bar.is_displayed())
        assert bar.text == "1 new item ↑"
        assert card_at(browser, 100, 600) == under_thumb  # nothing moved under the thumb
        assert len(browser.find_elements(By.CSS_SELECTOR, "#items .item")) == 3
        bar.click()
        ids = [e.get_attribute("data-id") for e in browser.find_elements(By.CSS_SELECTOR, "#items .item")]
        assert ids == [str(newest.id), *(str(e.id) for e in reversed(events))]
        assert not bar.is_displayed()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#filters button").text == "all 4")


def test_a_refused_relabel_says_so_on_its_card_and_a_relabel_can_be_undone(
    make_bin, tmp_path: Path, browser
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    config = web_config(tmp_path)
    token = new_token(config)
    observers = make_observers(config)
    wait = waiting(browser)
    with make_bin("red", "green", "grey", config=config, observers=observers) as b:
        events = [b.item() for _ in range(3)]
        page = page_of(observers[0])
        wait_for_items(page, 3)
        open_page(browser, page, 3)
        browser.execute_script("localStorage.setItem('smartbin-token', 'a-token-the-bin-never-made')")
        can = card_of(browser, events[0].id)
        can.find_element(By.CSS_SELECTOR, 'button[data-label="glass"]').click()
        wait.until(lambda d: can.get_attribute("data-state") == "refused")
        assert can.find_element(By.CSS_SELECTOR, ".review").text == "relabel refused"
        toast = can.find_element(By.CSS_SELECTOR, ".toast")
        assert toast.is_displayed() and "a valid token is needed" in toast.text
        # level with the button the thumb just touched, on the screen (this card is cut by its foot)
        box, tapped = (
            browser.execute_script("return arguments[0].getBoundingClientRect()", e)
            for e in (toast, can.find_element(By.CSS_SELECTOR, 'button[data-label="glass"]'))
        )
        assert box["top"] >= 0 and box["bottom"] <= browser.execute_script("return innerHeight"), box
        assert box["top"] <= tapped["bottom"] and tapped["top"] <= box["bottom"], (box, tapped)
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {}
        # the token refused is not forgotten behind the person's back: they give another
        assert (
            browser.execute_script("return localStorage.getItem('smartbin-token')")
            == "a-token-the-bin-never-made"
        )
        toast.find_element(By.XPATH, ".//button[text()='new token']").click()
        prompt = wait.until(expected_conditions.alert_is_present())
        prompt.send_keys(token)
        prompt.accept()
        wait.until(lambda d: can.get_attribute("data-state") == "saved")
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass"}

        # a second thought, and an undo: the one before counts again
        can.find_element(By.CSS_SELECTOR, 'button[data-label="plastic"]').click()
        wait.until(lambda d: can.find_element(By.CSS_SELECTOR, ".review").text == "saved: plastic")
        assert toast.text.startswith(f"item {events[0].id}: plastic (was glass)")
        toast.find_element(By.XPATH, ".//button[text()='undo']").click()
        wait.until(lambda d: can.get_attribute("data-state") == "undone")
        assert can.find_element(By.CSS_SELECTOR, ".review").text == "undone: glass again"
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass"}
        # and the first one too: the bin's own label, as if nobody had tapped
        can.find_element(By.CSS_SELECTOR, 'button[data-label="paper"]').click()
        wait.until(lambda d: can.find_element(By.CSS_SELECTOR, ".review").text == "saved: paper")
        toast.find_element(By.XPATH, ".//button[text()='undo']").click()
        wait.until(lambda d: can.find_element(By.CSS_SELECTOR, ".review").text == "undone: glass again")
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {events[0].id: "glass"}
        assert page.json("/api/events?limit=3")["events"][2]["review"]["label"] == "glass"


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
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".item .review").text == "saved: glass")
        with sqlite3.connect(config.paths.events_db) as db:
            assert reviewed_labels(db) == {event.id: "glass"}

        browser.get(link)  # a second time: refused, saying what to do
        wait.until(lambda d: "smartbin web link" in d.find_element(By.ID, "message").text)
        assert browser.current_url == page.base + "/signin"  # the code left the address bar


def test_the_camera_view_shows_the_chamber_now_beside_its_reference(factory, tmp_path: Path, browser) -> None:
    import time

    import numpy as np
    from selenium.webdriver.common.by import By

    from smartbin.device.vision.chamber import save_reference

    from ..conftest import COLOURS, Bin

    config = web_config(tmp_path, classifier={"crop": "item"})
    token = new_token(config)
    grey = np.full((48, 64, 3), COLOURS["grey"], np.uint8)
    save_reference(config.paths.state_dir, [grey] * 3, config.camera, config.empty)
    camera = StageCamera("grey", factory.pin(5))
    camera.item = "red"
    observers = make_observers(config)
    wait = waiting(browser)
    with Bin(config, factory, camera, observers=observers) as b:
        b.lid_pin.drive_high()
        page = page_of(observers[0])
        browser.get(page.base + "/")
        browser.execute_script("localStorage.setItem('smartbin-token', arguments[0])", token)
        browser.find_element(By.ID, "camera-link").click()  # the page's own way there: #camera
        loaded = "return [document.getElementById('live').naturalWidth, document.getElementById('ref').naturalWidth]"
        wait.until(lambda d: d.execute_script(loaded) == [64, 64])
        assert browser.find_element(By.ID, "ref-note").text.startswith("empty reference · ")
        assert not browser.find_element(By.ID, "filters").is_displayed()
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        wait.until(lambda d: len(camera.captures) >= 3)  # refreshed while shown
        assert {thread for thread, _ in camera.captures} == {b.thread.name}

        browser.find_element(By.ID, "test-item").click()
        wait.until(lambda d: d.find_element(By.ID, "camera-message").text.startswith("test: can "))
        assert browser.find_element(By.ID, "camera-message").text.endswith(
            "→ can (sorted); not moved, not recorded"
        )
        assert b.daemon.items == 0

        browser.find_element(By.ID, "camera-link").click()  # back to the items: no more snapshots
        wait.until(lambda d: d.find_element(By.ID, "filters").is_displayed())
        time.sleep(0.2)
        taken = len(camera.captures)
        time.sleep(2)
        assert len(camera.captures) == taken
