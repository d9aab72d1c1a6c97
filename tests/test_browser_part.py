"""In a real browser, with the real built-in model: a part's page opens from the Circuit page's head grid and from its
rankings, shows the model's reply and the part at work, and stays readable on a 1024x768 projector.

Needs Chromium and Playwright (skipped without them); screenshots go to ``$SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.defaults import EMBEDDED_NAME
from emo_core.generation import generate
from emo_core.results import load_results
from emo_core.scoring import SCORING_SETTINGS
from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, cell_positions, click_head, settle

pytestmark = pytest.mark.slow  # a server, a real browser and the real model
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)

from tests.test_browser import CANVAS_TEXT_SPY, chart_text_problems  # noqa: E402  (after the skips: it needs playwright)
from ui.run import DEFAULTS, TOKENS, default_scenario, scenario_by_key  # noqa: E402

DONE = "layer by layer"  # the page's last heading: the reply is written and its pass is done


def shots() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or "/tmp/emo_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for_part(page: object, token: str) -> None:
    """Until the part page of ``token`` has written its reply and drawn every view."""
    page.get_by_role("heading", name=f"{token}:").wait_for(timeout=120_000)
    page.get_by_text(DONE).first.wait_for(timeout=180_000)
    settle(page)
    page.wait_for_timeout(1500)  # the charts finish drawing


def test_a_part_opens_from_the_head_grid_and_from_the_rankings(server: str) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(f"{server}/circuit?emotion=fear")
        page.get_by_text("Where the circuit lives").first.wait_for(timeout=60_000)
        settle(page)
        grid = page.get_by_test_id("stVegaLiteChart").filter(has_text="Importance of every attention head").first
        grid.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        click_head(page, grid, "L20H3", cell_positions(page, grid, {"L20H3"})["L20H3"])
        wait_for_part(page, "L20H3")
        assert "part=L20H3" in page.url and "emotion=fear" in page.url
        assert page.get_by_text("Which words it looks at").count() == 1
        page.screenshot(path=shots() / "part_from_grid.png")

        page.goto(f"{server}/circuit?emotion=fear")
        page.get_by_text("Two ways to rank the parts").first.wait_for(timeout=60_000)
        settle(page)
        table = page.get_by_test_id("stDataFrame").first  # "writes fear": the paper's score, heads
        box = table.bounding_box()
        link = (box["x"] + 15, box["y"] + 35 + 17)  # the first row's part link, under the header
        page.mouse.click(*link)  # the grid selects the cell; a click on a selected link cell follows it, into a new tab
        page.wait_for_timeout(500)
        with context.expect_page(timeout=30_000) as opened:
            page.mouse.click(*link)
        tab = opened.value
        tab.wait_for_load_state()
        token = tab.url.split("part=")[1].split("&")[0]
        wait_for_part(tab, token)
        assert tab.get_by_role("heading", name=f"{token}:").count() == 1
        browser.close()


def library_reply(bundle: ec.ModelBundle, emotion: str) -> str:
    """The reply the part page writes by default: the default scenario, steered toward ``emotion`` at the tuned strength."""
    results = load_results(EMBEDDED_NAME)
    base = Baseline("steered", "direction")
    kit = results.steering_kit(bundle)
    prompt = base.prompt(bundle, scenario_by_key()[default_scenario()].user, emotion)
    settings = replace(SCORING_SETTINGS, max_new_tokens=DEFAULTS[TOKENS], classroom_safe=True)
    return generate(bundle, [prompt], settings, base.edits(kit, emotion))[0].text


def test_the_part_page_reads_well_at_1024x768(server: str, embedded: ec.ModelBundle) -> None:
    """A head and a neuron: the library's reply shown, no chart text cut off or outside its chart."""
    expected = " ".join(library_reply(embedded, "fear").split())
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.add_init_script(CANVAS_TEXT_SPY)
        for token in ("L20H3", "L25N100"):
            page.goto(f"{server}/part?emotion=fear&part={token}")
            wait_for_part(page, token)
            shown = [" ".join(text.split()) for text in page.get_by_test_id("stMarkdown").all_inner_texts()]
            assert sum(expected in text for text in shown) == 1, shown
            assert chart_text_problems(page) == []
            charts = page.get_by_test_id("stVegaLiteChart")
            for index in range(charts.count()):
                charts.nth(index).scroll_into_view_if_needed()
                page.wait_for_timeout(300)
                page.screenshot(path=shots() / f"part_1024_{token}_{index}.png")
        browser.close()
