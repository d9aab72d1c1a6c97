"""In a real browser, with the real built-in model: the text a page shows is the library's reply, shown once.

Needs Chromium and Playwright (skipped without them); screenshots go to ``$SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import emo_core as ec
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import load_results
from emo_core.scenarios import EMOTION_SYSTEM
from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, cell_positions, click_head, link_shows, settle
from ui.replies import sentence

pytestmark = pytest.mark.slow  # a server and a real browser
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)


def shots() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or "/tmp/emo_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def picked_value(page: object) -> str:
    """The text of the Scenario picker's current choice."""
    return page.get_by_test_id("stSelectbox").filter(has_text="Scenario").locator("input").input_value()


def test_home_reply_is_the_librarys_reply(server: str, embedded: ec.ModelBundle) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{server}/?emotion=fear")
        page.get_by_role("button", name="Let the model reply").wait_for(timeout=60_000)
        settle(page)
        first = load_results(EMBEDDED_NAME).table("prompts").iloc[0]  # the picker's default
        assert picked_value(page) == f"{sentence(first['scenario'])} {sentence(first['event'])}"
        page.get_by_role("button", name="Let the model reply").click()
        page.get_by_text("Small models often ignore the instruction").wait_for(timeout=120_000)
        settle(page)
        page.screenshot(path=shots() / "home_reply.png")
        prompt = ec.chat_prompt(embedded, f"{first['scenario']}\n{first['event']}", EMOTION_SYSTEM.format(emotion="fear"))
        reply = ec.generate(embedded, [prompt], ec.GenerationSettings(max_new_tokens=48))[0].text
        blocks = [text.strip() for text in page.get_by_test_id("stMarkdown").all_inner_texts()]
        assert " ".join(reply.split()) in [" ".join(block.split()) for block in blocks]
        assert sum(reply[:15] in block for block in blocks) == 1
        browser.close()


def reply_text(column: str) -> str:
    """The reply in a column's text: the first non-empty line after the column's title."""
    return [line.strip() for line in column.splitlines() if line.strip()][1]


def shown_replies(page: object, done: str = "The baseline reads as", screenshot: str | None = None) -> list[str]:
    """Once ``done`` is drawn and the run has finished: the two replies the page shows side by side (left, right),
    after saving a screenshot named ``screenshot`` if given."""
    page.get_by_text(done).wait_for(timeout=180_000)
    settle(page)
    if screenshot:
        page.wait_for_timeout(800)  # the charts finish drawing
        page.screenshot(path=shots() / screenshot)
    columns = page.get_by_test_id("stColumn").filter(has_text="What the judge reads").all_inner_texts()
    return [reply_text(text) for text in columns[:2]]


def test_knockout_from_the_tour_with_two_clicked_heads(server: str) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{server}/?emotion=anger&tokens=24")
        page.get_by_role("button", name="Start the tour").click()
        for step in range(2, 7):
            page.get_by_text(f"Tour, step {step - 1} of 7").wait_for(timeout=60_000)
            settle(page)
            page.get_by_role("button", name="Next:").click()
        page.get_by_role("heading", name="Switch parts off").wait_for(timeout=120_000)
        page.get_by_text("Before any word is written").wait_for(timeout=120_000)
        settle(page)
        assert "sel=" in page.url and "baseline=steered" in page.url
        page.get_by_role("button", name="Clear").click()
        page.get_by_text("Selected: nothing.").wait_for(timeout=60_000)  # the rerun that cleared it has drawn the page
        settle(page)
        page.wait_for_timeout(1000)  # and the grid has mounted again
        positions = cell_positions(page, page.get_by_test_id("stVegaLiteChart").first, {"L23H1", "L20H3"})
        assert set(positions) == {"L23H1", "L20H3"}
        for token, selected in (("L23H1", "1 head in layer 23"), ("L20H3", "2 heads in layers 20–23")):
            click_head(page, page.get_by_test_id("stVegaLiteChart").first, token, positions[token])
            link_shows(page, token)
            page.get_by_text(f"Selected: {selected}.").wait_for()  # as a person does: the next click once this one shows
            page.mouse.move(0, 0)
        assert "L23H1" in page.url and "L20H3" in page.url
        page.get_by_role("button", name="Generate").click()
        replies = shown_replies(page, screenshot="knockout_two_heads.png")
        assert all(len(reply) > 10 for reply in replies)  # two heads may leave the prepared, firmer baseline's words as they were
        assert page.get_by_text("With 2 heads in layers 20–23 off").count() == 1  # the run used the clicked heads
        assert page.get_by_text("One reply is an anecdote: the grid above counts 12.").count() == 1
        browser.close()


SESSION_LINKS = {
    "a": "knockout?emotion=anger&scenario=work_eval_00:negative&baseline=steered&tokens=8&decode=sample&seed=11&mode=mean"
    "&sel=L20H3,L21H4,L22N100",
    "b": "knockout?emotion=anger&scenario=work_eval_00:negative&baseline=steered&tokens=8&decode=sample&seed=11&mode=mean"
    "&sel=L16H0,L17H1,L18H2,L19H3",
}


def open_knockout(page: object, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Generate").wait_for(timeout=120_000)
    settle(page)


def test_two_browser_sessions_generating_at_once_each_get_their_own_replies(server: str) -> None:
    """Two tabs with different selections press Generate together; each shows what it shows when generating alone."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        pages = {name: browser.new_context(viewport=VIEWPORT).new_page() for name in SESSION_LINKS}
        alone = {}
        for name, link in SESSION_LINKS.items():
            open_knockout(pages[name], f"{server}/{link}")
            pages[name].get_by_role("button", name="Generate").click()
            alone[name] = shown_replies(pages[name])
        for page in pages.values():
            page.get_by_role("button", name="Generate").click()
        for page in pages.values():
            page.get_by_test_id("stStatusWidget").wait_for()  # this run has begun (the last run's replies are still shown)
        together = {name: shown_replies(page) for name, page in pages.items()}
        pages["b"].screenshot(path=shots() / "knockout_two_sessions_b.png")
        assert together == alone and alone["a"][1] != alone["b"][1] and alone["a"][0] == alone["b"][0]
        browser.close()
