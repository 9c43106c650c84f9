"""The live page in a real browser: headless Chromium (Selenium) against a real `streamer run` daemon
with two lavfi cameras (tests/service/page_daemon.py). Skipped only where no browser is installed."""

from __future__ import annotations

import io
import time
import urllib.error

import pytest

from tests.service.page_daemon import browser_missing, chromium, running_daemon

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

TOKEN = "page-test-token"
PIXELS = """
const img = document.querySelector(`.tile[data-source="${arguments[0]}"] img.preview`);
if (!img || !img.complete || !img.naturalWidth) return null;
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const context = canvas.getContext("2d");
context.drawImage(img, 0, 0);
const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
let hash = 0;
for (let i = 0; i < data.length; i += 3) hash = (hash * 31 + data[i]) >>> 0;
return [canvas.width, canvas.height, hash];
"""


@pytest.fixture(scope="module")
def daemon():
    with running_daemon() as running:
        yield running


@pytest.fixture(scope="module")
def browser(daemon):
    with chromium() as driver:
        driver.get(daemon.url + "/")
        yield driver


def wait_for(condition, timeout: float = 20.0, step: float = 0.1):
    """Poll `condition()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)
    return found


def tile(browser, source_id: str):
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, f'.tile[data-source="{source_id}"]')
    return found[0] if found else None


def tile_state(browser, source_id: str) -> str | None:
    element = tile(browser, source_id)
    return element.get_attribute("data-state") if element is not None else None


def events_of(browser, kind: str, source_id: str) -> int:
    return browser.execute_script(
        "return document.querySelectorAll(`#events li[data-kind='${arguments[0]}'][data-source='${arguments[1]}']`).length",
        kind, source_id)


def test_page_when_loaded_shows_a_tile_per_camera_whose_preview_changes(browser):
    assert browser.title == "streamer"
    assert wait_for(lambda: tile_state(browser, "face") == "running" and tile_state(browser, "pat") == "running")

    first = wait_for(lambda: browser.execute_script(PIXELS, "pat"))
    later = wait_for(lambda: (pixels := browser.execute_script(PIXELS, "pat")) and pixels != first and pixels)
    face = wait_for(lambda: browser.execute_script(PIXELS, "face"))

    assert first[:2] == later[:2] == [320, 180]  # the camera's size: under the preview's 640 px cap
    assert face[:2] == [480, 270]


def test_page_when_the_face_crosses_the_zone_lists_the_event_as_it_happens(browser):
    before = events_of(browser, "zone_enter", "face")

    wait_for(lambda: events_of(browser, "zone_enter", "face") > before, timeout=20)  # a pass takes 5 s

    newest = browser.execute_script("return document.querySelector('#events li[data-kind=zone_enter]').textContent")
    assert "middle" in newest and "face" in newest  # the zone's name and the class


def test_page_when_pause_is_clicked_the_source_pauses_and_resume_restarts_it(browser, daemon):
    from selenium.webdriver.common.by import By

    wait_for(lambda: tile_state(browser, "pat") == "running")
    tile(browser, "pat").find_element(By.CSS_SELECTOR, "button.pause").click()

    wait_for(lambda: tile_state(browser, "pat") == "paused")
    assert state_of(daemon, "pat") == "paused"
    assert state_of(daemon, "face") == "running"

    tile(browser, "pat").find_element(By.CSS_SELECTOR, "button.resume").click()
    wait_for(lambda: tile_state(browser, "pat") == "running")
    assert state_of(daemon, "pat") == "running"


def state_of(daemon, source_id: str) -> str:
    return next(source["state"] for source in daemon.get_json("/status")["sources"] if source["id"] == source_id)


def test_page_when_a_source_is_added_from_the_form_it_gets_a_tile_and_the_policy_still_holds(browser, daemon):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    add(browser, "cam3", "testsrc=size=160x90:rate=5")
    wait_for(lambda: tile_state(browser, "cam3") == "running")
    assert "added cam3" in browser.find_element(By.ID, "add-result").text

    add(browser, "cam4", "movie=/etc/hostname")  # a file, through a graph: [server.api_sources] refuses
    result = wait_for(lambda: (element := browser.find_element(By.ID, "add-result")).get_attribute("data-status") == "403" and element)
    assert "$.source.graph" in result.text
    assert "cam4" not in {source["id"] for source in daemon.get_json("/sources")["sources"]}

    remove = tile(browser, "cam3").find_element(By.CSS_SELECTOR, "button.remove")
    remove.click()
    remove.click()  # the second click confirms
    wait_for(lambda: tile(browser, "cam3") is None)
    assert "cam3" not in {source["id"] for source in daemon.get_json("/sources")["sources"]}
    assert Select(browser.find_element(By.ID, "add-type")).first_selected_option.text == "lavfi"


def add(browser, source_id: str, graph: str) -> None:
    from selenium.webdriver.common.by import By

    for field, value in (("add-id", source_id), ("add-where", graph)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#add button[type=submit]").click()


def test_page_screenshot_when_running_is_not_blank(browser):
    from PIL import Image, ImageStat

    wait_for(lambda: browser.execute_script(PIXELS, "face") and browser.execute_script(PIXELS, "pat"))
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")

    assert image.size[0] >= 1000
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 500  # a blank or one-colour page has a handful
    assert max(ImageStat.Stat(image).stddev) > 20


def test_page_when_the_server_has_a_token_asks_for_it_and_then_shows_the_cameras(browser):
    from selenium.webdriver.common.by import By

    with running_daemon(token=TOKEN) as guarded:
        with pytest.raises(urllib.error.HTTPError) as refused:
            guarded.get_json("/status")
        assert refused.value.code == 401

        browser.get(guarded.url + "/")  # the page's own files need no token: they hold no data
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed())
        assert tile(browser, "pat") is None

        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait_for(lambda: tile_state(browser, "pat") == "running")
        wait_for(lambda: browser.execute_script(PIXELS, "pat"))  # previews go with the token too
        wait_for(lambda: browser.find_element(By.ID, "connection").text == "live")
