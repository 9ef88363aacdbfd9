"""The drawing page in a real (headless, system) Chromium: draw test digits, walk the latent plane."""

from __future__ import annotations

import numpy as np
import pytest

from browser import draw, requested_urls, start_chromium, strokes_for, wait_for_reading
from conftest import ServerProcess


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_latent(driver, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.latent"))
    return driver.execute_script("return document.body.dataset.latent")


def canvas_pixels(driver, element_id) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').toDataURL()")


def test_traced_test_digits_are_read_right_and_land_on_the_plane(browser, server, real_mnist):
    raw = np.load(real_mnist)
    digits, labels = raw["x_test"][-10:].astype("float32") / 255.0, raw["y_test"][-10:]
    browser.get(server.url + "/")
    assert browser.title.startswith("kerasdl")
    assert wait_latent(browser) == "ready"
    right, read = 0, []
    for digit, label in zip(digits, labels):
        by_id(browser, "clear").click()
        strokes = strokes_for(digit)
        draw(browser, strokes)
        wait_for_reading(browser, len(strokes))
        answers = browser.execute_script(
            "return [...document.querySelectorAll('.model')].map(p => [p.dataset.model, p.dataset.digit])")
        answers = dict(answers)
        assert set(answers) == {"linear", "mlp", "cnn"} and all(v is not None for v in answers.values()), answers
        read.append(int(answers["cnn"]))
        right += int(answers["cnn"]) == int(label)
        assert browser.execute_script("return document.getElementById('plane').dataset.drawn")  # marked on the plane
    print(f"cnn read {right}/10 traced test digits right: {read} for {labels.tolist()}")
    assert right >= 8, (read, labels.tolist())
    latency = int(browser.execute_script("return document.body.dataset.latencyMs"))
    assert latency >= 0  # shown on the page; how fast is the benchmarks' question (bench/serve_load.py), not a test's
    assert not by_id(browser, "status").is_displayed()


def test_pointing_at_the_plane_decodes_images_that_change(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    assert wait_latent(browser) == "ready"
    plane = by_id(browser, "plane")
    blank = canvas_pixels(browser, "decoded")
    seen = []
    for dx, dy in ((-120, -120), (120, 120), (120, -100)):
        before = browser.execute_script("return document.getElementById('decoded').dataset.point || ''")
        ActionChains(browser).move_to_element_with_offset(plane, dx, dy).perform()
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "return (document.getElementById('decoded').dataset.point || '') !== arguments[0]", before))
        seen.append(canvas_pixels(browser, "decoded"))
    assert len(set(seen)) == 3 and blank not in seen
    by_id(browser, "show-pca").click()  # PCA's plane decodes in the page itself
    assert by_id(browser, "show-pca").get_attribute("aria-pressed") == "true"
    ActionChains(browser).move_to_element_with_offset(plane, 0, 50).perform()
    assert "PCA(2)" in by_id(browser, "decoded-at").text


def test_the_page_asks_only_its_own_server(browser, server):
    requested_urls(browser)  # drop what earlier tests logged
    browser.get(server.url + "/")
    wait_latent(browser)
    urls = requested_urls(browser)
    assert any(u.endswith("/static/app.js") for u in urls) and any("/v1/digits/latent" in u for u in urls)
    foreign = [u for u in urls if not (u.startswith(server.url + "/") or u.startswith(("data:", "blob:")))]
    assert not foreign, foreign
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_without_models_every_panel_says_how_to_export_it(browser, tmp_path):
    empty = tmp_path / "saved_models"
    empty.mkdir()
    bare = ServerProcess(empty)
    try:
        browser.get(bare.url + "/")
        wait_latent(browser)
        text = browser.find_element("tag name", "main").text
        for command in ("python -m kerasdl.mnist linear", "python -m kerasdl.mnist mlp",
                        "python -m kerasdl.mnist cnn", "python -m kerasdl.autoencoder"):
            assert command in text, text
        by_id(browser, "show-ae").click()
        assert "python -m kerasdl.autoencoder" in by_id(browser, "latent-note").text
        strokes = strokes_for(np.eye(28)[::-1] * 1.0)  # a stroke: still normalised and shown, no answers
        draw(browser, strokes)
        wait_for_reading(browser, len(strokes))
        assert not by_id(browser, "status").is_displayed()
    finally:
        bare.stop()
    from selenium.webdriver.support.ui import WebDriverWait

    draw(browser, strokes[:3])  # the server is gone: one readable line, never a blank page
    WebDriverWait(browser, 20).until(lambda d: by_id(d, "status").is_displayed())
    assert "cannot be reached" in by_id(browser, "status").text
    assert "python -m kerasdl.mnist cnn" in browser.find_element("tag name", "main").text


def test_number_mode_reads_three_traced_digits_left_to_right(browser, server, real_mnist):
    """The wide pad: three test digits written side by side come back as a 3-digit number, each with its bars."""
    from selenium.webdriver.common.action_chains import ActionChains

    raw = np.load(real_mnist)
    digits, labels = raw["x_test"][-3:].astype("float32") / 255.0, raw["y_test"][-3:]
    browser.get(server.url + "/")
    wait_latent(browser)
    by_id(browser, "number-mode").click()
    pad = by_id(browser, "pad")
    assert browser.execute_script("return document.getElementById('pad').width") == 840
    k = pad.size["width"] / 840  # CSS pixels per canvas pixel
    strokes = [(x0 + 280 * i, y0, x1 + 280 * i, y1) for i, digit in enumerate(digits)
               for x0, y0, x1, y1 in strokes_for(digit)]
    actions = ActionChains(browser, duration=0)
    for x0, y0, x1, y1 in strokes:
        actions.move_to_element_with_offset(pad, round(x0 * k - pad.size["width"] / 2),
                                            round(y0 * k - pad.size["height"] / 2)).click_and_hold()
        actions.move_to_element_with_offset(pad, round(x1 * k - pad.size["width"] / 2),
                                            round(y1 * k - pad.size["height"] / 2)).release()
    actions.perform()
    wait_for_reading(browser, len(strokes))
    number = browser.execute_script("return document.body.dataset.number")
    assert number is not None and len(number) == 3, number
    assert sum(a == str(b) for a, b in zip(number, labels)) >= 2, (number, labels.tolist())
    assert len(browser.find_elements("css selector", ".number-digit .bars")) == 3
    assert not by_id(browser, "status").is_displayed()
