"""In a real browser, with the real built-in model: the text a page shows is the library's reply, shown once.

Needs Chromium and Playwright (skipped without them); screenshots go to ``$SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import emo_core as ec
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import load_results
from emo_core.scenarios import EMOTION_SYSTEM
from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, server_env, settle, start_server, stop_server
from ui.replies import sentence

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
