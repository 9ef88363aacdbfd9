"""Headless Chromium from the system packages, driven by Selenium, and digits drawn on the page's pad.

No browser is downloaded: Debian's `chromium` and `chromium-driver` (apt-get install -y chromium
chromium-driver) are used where they are installed; elsewhere the browser tests are skipped
with that command as the reason (and fail instead when KERASDL_REQUIRE_BROWSER=1 or CI=true).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest

INSTALL = "apt-get install -y chromium chromium-driver"
PAD = 280  # the page's drawing canvas, in canvas pixels (10 per MNIST pixel)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(width: int = 1280, height: int = 1000):
    """A headless Chromium WebDriver that logs network requests; skips the test when there is none."""
    paths = chromium_paths()
    if paths is None:
        message = f"no system Chromium/ChromeDriver for the browser tests: {INSTALL}"
        if os.environ.get("KERASDL_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='kerasdl-chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)


def strokes_for(digit: np.ndarray, threshold: float = 0.5) -> list[tuple[float, float, float, float]]:
    """Trace a 28x28 digit's ink as horizontal strokes, one per run of ink pixels in a row, in pad pixels."""
    scale = PAD / 28
    strokes = []
    for row in range(28):
        ink = np.flatnonzero(digit[row] > threshold)
        if not len(ink):
            continue
        breaks = np.flatnonzero(np.diff(ink) > 1)
        for run in np.split(ink, breaks + 1):
            y = (row + 0.5) * scale
            strokes.append(((run[0] + 0.5) * scale, y, (run[-1] + 0.5) * scale, y))
    return strokes


def draw(driver, strokes) -> None:
    """Draw `strokes` on the page's pad with real (W3C) pointer input: down, move, up."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    pad = driver.find_element(By.ID, "pad")
    width = pad.size["width"]
    k = width / PAD  # CSS pixels per canvas pixel

    def at(x, y):  # Selenium 4 offsets are from the element's centre
        return round(x * k - width / 2), round(y * k - width / 2)

    actions = ActionChains(driver, duration=0)
    for x0, y0, x1, y1 in strokes:
        actions.move_to_element_with_offset(pad, *at(x0, y0)).click_and_hold()
        actions.move_to_element_with_offset(pad, *at((x0 + x1) / 2, y1))
        actions.move_to_element_with_offset(pad, *at(x1, y1)).release()
    actions.perform()


def wait_for_reading(driver, strokes: int, timeout: float = 30) -> None:
    """Until the page has read the drawing with all `strokes` and has no request in flight."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return document.body.dataset.readStrokes === arguments[0] && document.body.dataset.busy === 'false'",
        str(strokes)))


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
