"""A real browser clicks through the app: every page, the layer slider, a shared link, a bad link; screenshots are saved.

Needs Chromium (Debian's ``/usr/bin/chromium``) and Playwright; skipped when either is missing. Screenshots go
to ``$SCREENSHOT_DIR`` when set (look at them), else to pytest's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, server_env, settle, start_server, stop_server

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server(server_env(tmp_path_factory.mktemp("results")))
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: object, path: Path) -> None:
    """A screenshot once the charts have had time to draw."""
    settle(page)
    page.wait_for_timeout(800)
    page.screenshot(path=path)


def tooltip_under_pointer(page: object, chart: object, step: int = 10) -> str:
    """Sweep the pointer over ``chart`` until Vega shows a tooltip; its text ('' if none appeared)."""
    box = chart.bounding_box()
    for y in range(int(box["y"]) + step, int(box["y"] + box["height"]) - step, step):
        for x in range(int(box["x"]) + step, int(box["x"] + box["width"]) - step, step):
            page.mouse.move(x, y)
            text = page.evaluate("document.getElementById('vg-tooltip-element')?.innerText ?? ''")
            if text.strip():
                return text
    return ""


def test_click_through_every_page(server: str, shots: Path) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server)
        page.get_by_role("heading", name="Emotion Circuit Explorer").wait_for(timeout=60_000)
        page.wait_for_timeout(300)
        settle(page)
        shoot(page, shots / "1_home.png")

        page.get_by_test_id("stSidebarNav").get_by_text("Clusters").click()
        page.get_by_text("Where in the model do the emotions separate?").wait_for()
        page.wait_for_timeout(300)
        settle(page)
        shoot(page, shots / "2_clusters.png")
        layer_before = page.url.split("layer=")[1].split("&")[0]

        slider = page.get_by_test_id("stSidebar").get_by_role("slider")
        slider.focus()
        slider.press("Home")
        page.wait_for_timeout(300)
        settle(page)
        assert "layer=0" in page.url and layer_before != "0"
        page.get_by_text("At layer 0,").wait_for()
        shoot(page, shots / "3_clusters_layer0.png")
        slider.press("ArrowRight")
        page.wait_for_timeout(300)
        settle(page)
        assert "layer=1" in page.url
        page.get_by_text("At layer 1,").wait_for()
        page.get_by_text("The numbers behind these charts").click()
        page.get_by_text("Emotion similarity at layer 1").wait_for()
        settle(page)
        tooltip = tooltip_under_pointer(page, page.get_by_test_id("stVegaLiteChart").first)
        assert "Scenario" in tooltip and "Emotion asked for" in tooltip
        page.mouse.move(0, 0)

        page.get_by_test_id("stSidebarNav").get_by_text("Circuit").click()
        page.get_by_text("Where the circuit lives").wait_for()
        page.wait_for_timeout(300)
        settle(page)
        assert "layer=1" in page.url
        page.get_by_role("button", name="Select the anger circuit").click()
        page.wait_for_timeout(300)
        settle(page)
        assert "sel=" in page.url
        shoot(page, shots / "4_circuit.png")
        shared = page.url

        other = browser.new_page(viewport=VIEWPORT)
        other.goto(shared.replace("emotion=anger", "emotion=fear"))
        other.get_by_role("heading", name="The fear circuit").wait_for(timeout=60_000)
        settle(other)
        assert "layer=1" in other.url and "sel=" in other.url

        other.goto(f"{server}/clusters?layer=banana&emotion=rage&model=nope")
        other.get_by_text("is not a layer number").wait_for(timeout=60_000)
        other.get_by_text("Where in the model do the emotions separate?").wait_for()
        settle(other)
        shoot(other, shots / "5_bad_link.png")
        assert other.get_by_test_id("stException").count() == 0
        browser.close()


def test_a_link_as_a_fresh_servers_first_request_opens_cleanly(tmp_path: Path) -> None:
    """Streamlit serves a process's first run in its legacy multipage mode; the link must still open its page, with no dialog."""
    process, url = start_server(server_env(tmp_path))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{url}/clusters?layer=3&emotion=fear")
            page.get_by_text("At layer 3, fear").first.wait_for(timeout=60_000)
            settle(page)
            page.wait_for_timeout(500)
            assert page.get_by_test_id("stDialog").count() == 0
            assert "layer=3" in page.url and "emotion=fear" in page.url
            browser.close()
    finally:
        stop_server(process)
