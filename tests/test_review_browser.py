"""The review page in a real browser (Debian's headless Chromium through Selenium and chromedriver): accept a
proposal with the keyboard, draw a box with the mouse, set a facing, mark no face, save, apply; then the
manifest holds those faces and a second `crop-drawings --boxes` run gives the same manifest.

Skips, saying why, where Chromium, chromedriver or Selenium are missing (.ci/run installs them).
P2D_REVIEW_SCREENSHOT=path writes the page's screenshot there (docs/review_picture.py uses it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from p2d.cli import app
from p2d.curate.drawings import read_hand_boxes
from p2d.manifest import read_manifest
from p2d.review.server import ReviewApp, serve_in_thread
from test_review import FOUND, TILTED, make_drawings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the dev extra installs it
    webdriver = None

pytestmark = pytest.mark.skipif(
    webdriver is None or not CHROMIUM or not DRIVER,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and "
           "selenium (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,860", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.fixture()
def page(browser, tmp_path):
    raw = make_drawings(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["crop-drawings", str(raw), str(out)])
    assert r.exit_code == 0, r.output
    server, url = serve_in_thread(ReviewApp(out))
    browser.get(url)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    yield browser, raw, out
    server.shutdown()
    server.server_close()


def wait(driver, condition, seconds: float = 60):
    return WebDriverWait(driver, seconds).until(condition)


def select(driver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f".card[title^='{name}:']").click()
    wait(driver, lambda d: d.find_element(By.ID, "name").text.endswith(name))


def press(driver, keys: str) -> None:
    ActionChains(driver).send_keys(keys).perform()


def drag(driver, start: tuple[float, float], end: tuple[float, float], size: tuple[float, float]) -> None:
    """A mouse drag on the overlay from `start` to `end`, in the drawing's pixels."""
    overlay = driver.find_element(By.ID, "overlay")
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, "
                                 "r.height];",
                                 overlay)

    def offset(px, py):  # Selenium's offsets are from the element's centre
        return round(px * rect[0] / size[0] - rect[0] / 2), round(py * rect[1] / size[1] - rect[1] / 2)

    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    chain = ActionChains(driver)
    chain.move_to_element_with_offset(overlay, *offset(*start)).click_and_hold()
    chain.move_to_element_with_offset(overlay, *offset(*middle))
    chain.move_to_element_with_offset(overlay, *offset(*end)).release().perform()


def test_fix_drawings_in_the_browser(page):
    driver, raw, out = page
    state = driver.execute_script("return state.drawings.items")
    by = {x["name"]: x for x in state}
    assert by[TILTED]["status"] == "proposed"

    # the proposal, accepted with the keyboard
    select(driver, TILTED)
    shot = os.environ.get("P2D_REVIEW_SCREENSHOT")
    if shot:  # the README's picture: a proposal (dashed) to accept, the status line
        wait(driver, lambda d: d.execute_script("return document.getElementById('big').complete"))
        driver.save_screenshot(shot)
    press(driver, "a")
    # a box drawn with the mouse on a found face, then its facing set
    select(driver, FOUND[1])
    item = by[FOUND[1]]
    size = (item["width"], item["height"])
    x, y, w, h = (size[0] * 0.3, size[1] * 0.2, size[0] * 0.3, size[1] * 0.3)
    drag(driver, (x, y), (x + w, y + h), size)  # draw
    drag(driver, (x + w, y + h), (x + w * 1.25, y + h * 1.2), size)  # resize by the bottom-right handle
    # move
    drag(driver, (x + w / 2, y + h / 2), (x + w / 2 - size[0] * 0.05, y + h / 2 + size[1] * 0.04), size)
    drawn = (x - size[0] * 0.05, y + size[1] * 0.04, w * 1.25, h * 1.2)
    press(driver, "r")
    # no face in the fire engine
    select(driver, "engine.png")
    press(driver, "x")
    assert "3" in driver.find_element(By.ID, "status").text  # three unsaved edits
    press(driver, "s")
    wait(driver, lambda d: d.execute_script("return Object.keys(edits).length === 0 && !busy"))
    hand = read_hand_boxes(out / "boxes.csv")
    assert set(hand.boxes) == {TILTED, FOUND[1]} and hand.drops == {"engine.png": "no face"}
    assert hand.views == {FOUND[1]: "right"}
    got = hand.boxes[FOUND[1]]
    assert all(abs(a - b) <= 0.02 * max(item["width"], item["height"]) + 1 for a, b in zip(got, drawn)), got

    driver.find_element(By.ID, "apply").click()
    wait(driver, lambda d: "applied" in d.find_element(By.ID, "toast").text, 120)
    df = read_manifest(out / "manifest.csv")
    rows = {Path(p).name: r for p, r in zip(df["source_path"], df.to_dict("records"))}
    assert rows[TILTED]["keep"] and rows[TILTED]["detector"] == "hand"
    assert (rows[FOUND[1]]["keep"] and rows[FOUND[1]]["detector"] == "hand"
            and rows[FOUND[1]]["facing"] == "right")
    assert rows["engine.png"]["reason"] == "rejected:no face"
    status = driver.find_element(By.ID, "status").text
    assert "3 of 4 have a face" in status and "2 fixed by hand" in status

    # the page shows the new crop at once
    select(driver, TILTED)
    crop = driver.find_element(By.ID, "crop")
    wait(driver,
         lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", crop) == 128)

    # what the page wrote is what the command reads: a second run gives the same manifest
    before = (out / "manifest.csv").read_bytes()
    r = CliRunner().invoke(app, ["crop-drawings", str(raw), str(out), "--boxes", str(out / "boxes.csv")])
    assert r.exit_code == 0, r.output
    assert (out / "manifest.csv").read_bytes() == before


def test_a_photo_override_from_the_page_survives_manifest_build(browser, tmp_path):
    from test_review import make_photos

    photos = make_photos(tmp_path)
    server, url = serve_in_thread(ReviewApp(photos))
    try:
        browser.get(url)
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        assert not browser.find_element(By.ID, "drawings").is_displayed()  # a photo folder: no drawings
        astronaut = browser.find_element(By.CSS_SELECTOR, ".photo[data-path$='astronaut.png']")
        assert "smile_score" in astronaut.text  # the measure beside its threshold
        astronaut.click()
        press(browser, "k")
        wait(browser, lambda d: "keep" in d.find_element(By.ID, "toast").text)
    finally:
        server.shutdown()
        server.server_close()
    drawings = tmp_path / "scaled"
    recipe = tmp_path / "exp.toml"
    shutil.copy(Path(__file__).resolve().parent.parent / "p2d" / "recipes" / "tiny.toml", recipe)
    for argv in (["scale", str(make_drawings(tmp_path / "d")), str(drawings)],
                 ["manifest", "build", "--recipe", str(recipe), "--from", str(photos / "manifest.csv"),
                  "--from", str(drawings / "manifest.csv"), "--test-count", "0", "--no-inspect"]):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0, r.output
    built = read_manifest(tmp_path / "exp.csv")
    row = built[built["path"].str.endswith("astronaut.png")].iloc[0]
    assert row["keep"] and row["override"] == "keep"
