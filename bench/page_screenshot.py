"""Screenshot of the drawing page with a digit drawn and the latent plane probed: docs/figures/page.png.

    python bench/page_screenshot.py [--models saved_models] [--digit 0] [--out docs/figures/page.png]

Starts `python -m kerasdl.serve` on a free port, draws MNIST test digit --digit (a 7) on the pad
with real pointer strokes in headless system Chromium, points at the autoencoder's plane, and
saves the screenshot; prints the page's reading and its stroke-to-bars latency as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import draw, start_chromium, strokes_for, wait_for_reading  # noqa: E402
from conftest import ServerProcess  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/page_screenshot.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "saved_models", help="exports to serve (default saved_models)")
    p.add_argument("--digit", type=int, default=0, help="index of the MNIST test digit to draw (default 0, a 7)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "page.png", help="where the PNG goes")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from kerasdl import data

    (_, _), (x_test, y_test) = data.load_mnist()
    server = ServerProcess(args.models)
    driver = start_chromium(1360, 900)
    try:
        driver.get(server.url + "/")
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.latent"))
        strokes = strokes_for(x_test[args.digit].astype("float32") / 255.0)
        latencies = []
        for _ in range(5):  # the last of five drawings, so the latency is a warm one
            driver.find_element("id", "clear").click()
            draw(driver, strokes)
            wait_for_reading(driver, len(strokes))
            latencies.append(int(driver.execute_script("return document.body.dataset.latencyMs")))
        plane = driver.find_element("id", "plane")
        ActionChains(driver).move_to_element_with_offset(plane, 60, -40).perform()
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return document.getElementById('decoded').dataset.point"))
        readings = dict(driver.execute_script(
            "return [...document.querySelectorAll('.model')].map(p => [p.dataset.model, p.dataset.digit])"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
        server.stop()
    print(json.dumps({"label": int(y_test[args.digit]), "readings": readings, "latency_ms": latencies,
                      "latency_ms_median": float(np.median(latencies)), "screenshot": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
