"""The tour's last steps in headless Chromium with the real built-in model: what a class is shown must show the effect.

The tour's knockout step opens the Knockout page with the emotion's prepared knockout. Its twelve-scenario grid must count
more replies that lost the emotion with those parts off than with random parts off, and its close-up reply must lose the
emotion; the layer-by-layer view shows both replies. The last step opens the page of that knockout's strongest part.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import load_results
from tests.live_app import BROWSER_ARGS, CHROMIUM, settle
from ui.data import results_root
from ui.part_view import default_part
from ui.tour import clearest

pytestmark = pytest.mark.slow  # a server, a real browser and the real model
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)

# The emotion whose prepared knockout the evaluation found clearest, as the tour itself recommends it (sadness when the
# results have no report).
EMOTION = (clearest(load_results(EMBEDDED_NAME, results_root()).report) or ["sadness"])[0]
COUNTS = re.compile(r"off, (\d+) of (\d+) lost their " + EMOTION + r"; with .* off \(a fresh set per scenario\), (\d+) of (\d+) did")
CLOSE_UP = re.compile(r"The baseline reads as (\w+); with your parts off the reply reads as (\w+)")


def test_the_tours_last_step_shows_the_knockout_beating_chance(server: str, tmp_path: Path) -> None:
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{server}/?emotion={EMOTION}")
        page.get_by_role("button", name="Start the tour →").click(timeout=120_000)
        for step in range(2, 7):
            page.get_by_role("button", name=re.compile("^Next: ")).click(timeout=240_000)
            page.get_by_text(re.compile(f"step {step} of 7")).first.wait_for(timeout=240_000)  # the next button, not this one again
            settle(page)
        page.get_by_role("button", name="Run on 12 scenarios").click(timeout=240_000)
        sentence = page.get_by_text(re.compile(r"\d+ of \d+ lost their " + EMOTION)).first
        sentence.wait_for(timeout=240_000)
        settle(page)
        page.screenshot(path=shots / "tour_grid.png")
        found = COUNTS.search(sentence.inner_text())
        assert found, sentence.inner_text()
        removed, carried, random_removed, _ = map(int, found.groups())
        assert carried >= 6 and removed > random_removed, sentence.inner_text()
        page.get_by_role("button", name="Generate").click()
        close_up = page.get_by_text(CLOSE_UP).first
        close_up.wait_for(timeout=240_000)
        settle(page)
        page.screenshot(path=shots / "tour_close_up.png")
        before, after = CLOSE_UP.search(close_up.inner_text()).groups()
        assert before == EMOTION and after != EMOTION, close_up.inner_text()
        page.get_by_text("Your parts off", exact=True).first.wait_for(timeout=120_000)  # the knocked-out reply's layer view
        assert page.get_by_test_id("stException").count() == 0

        strongest = default_part(load_results(EMBEDDED_NAME, results_root()), EMOTION)
        page.get_by_role("button", name="Next: What one part does").click(timeout=240_000)
        page.get_by_role("heading", name=f"{strongest.token}:").wait_for(timeout=240_000)
        page.get_by_text("layer by layer").first.wait_for(timeout=240_000)
        settle(page)
        page.screenshot(path=shots / "tour_part.png")
        assert "step 7 of 7" in page.get_by_text(re.compile("Tour, step")).first.inner_text()
        assert page.get_by_test_id("stException").count() == 0
        browser.close()
