"""Dashboard speed in a real browser (headless Chromium against ``streamlit run app.py``), from a cold start.

Prints: cold start to the first usable page (server start, imports, cache read and first render), the
time a layer switch on the Clusters page takes until the new layer's map and sentence are on screen, and
the time a page switch takes until the new page's content is on screen. Medians over repeated switches.
Uses the shipped cache of the default model (or a synthetic one before it exists; the output says which).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, server_env, settle, start_server, stop_server
from ui.data import RESULTS_DIR_ENV

REPEATS = 10


def summary(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"


def timed(page: Page, action: Callable[[], object], wait_for: str) -> float:
    """Seconds from ``action`` until ``wait_for`` (text drawn after the page's main chart) is visible."""
    start = time.perf_counter()
    action()
    page.get_by_text(wait_for).first.wait_for(timeout=60_000)
    elapsed = time.perf_counter() - start
    settle(page)
    return elapsed


def main() -> None:
    env = server_env(Path(tempfile.mkdtemp()))
    print(f"results: {env.get(RESULTS_DIR_ENV, 'the shipped cache')}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        start = time.perf_counter()
        process, url = start_server(env)
        server_up = time.perf_counter() - start
        try:
            page.goto(url)
            page.get_by_role("heading", name="Emotion Circuit Explorer").wait_for(timeout=60_000)
            page.get_by_role("button", name="Start the tour →").wait_for()
            settle(page)
            print(f"cold start to first usable page: {time.perf_counter() - start:.2f} s (server answering after {server_up:.2f} s)")

            nav = page.get_by_test_id("stSidebarNav")
            first = timed(page, lambda: nav.get_by_text("Clusters").click(), "Where in the model do the emotions separate?")
            print(f"first visit to Clusters: {first * 1000:.0f} ms")
            slider = page.get_by_test_id("stSidebar").get_by_role("slider")
            slider.focus()
            slider.press("End")
            page.wait_for_timeout(500)
            settle(page)
            last_layer = int(page.url.split("layer=")[1].split("&")[0])
            slider.press("Home")
            page.get_by_text("At layer 0,").wait_for()
            settle(page)
            layer_times, layer = [], 0
            for step in range(1, REPEATS + 1):
                phase = step % (2 * last_layer)
                target = phase if phase <= last_layer else 2 * last_layer - phase  # back and forth over the layers
                key = "ArrowRight" if target > layer else "ArrowLeft"
                layer_times.append(timed(page, lambda key=key: slider.press(key), f"At layer {target},"))
                layer = target
            print(f"layer switch on Clusters: {summary(layer_times)}")

            page_times = []
            for _ in range(REPEATS // 2):
                page_times.append(timed(page, lambda: nav.get_by_text("Circuit").click(), "Where the circuit lives"))
                page_times.append(timed(page, lambda: nav.get_by_text("Clusters").click(), "Where in the model do the emotions separate?"))
            print(f"page switch (Clusters <-> Circuit): {summary(page_times)}")
        finally:
            stop_server(process)
            browser.close()


if __name__ == "__main__":
    main()
