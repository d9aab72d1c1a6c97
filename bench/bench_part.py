"""The part page's speed with the real built-in model, against issue 25's budget: open within 1.5 s warm for a 60-word reply.

Prints, on this CPU: the one pass the page slices (``part_activity.trace`` with attention, every part's activity kept)
for a reply of about 60 words, in-process; in headless Chromium against the app as ``make run`` serves it, the page's
first open (the model writes the reply, then the pass), the same link in a new session (reply and pass shared, so only the
page is drawn), another part of the same reply in a new session, the Circuit page in a new session for reference (what a
new session costs on a page that runs no model), another part typed into an open page; and the warm figure the budget
asks for: a part opened in a session, plus one pass. Medians over ``REPEATS``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.bench_generation import cpu_name
from emo_core.baselines import Baseline
from emo_core.defaults import EMBEDDED_NAME
from emo_core.generation import generate
from emo_core.models import load_model
from emo_core.part_activity import trace
from emo_core.results import load_results
from emo_core.scoring import SCORING_SETTINGS
from tests.live_app import BROWSER_ARGS, CHROMIUM, server_env, settle, start_server, stop_server
from ui.run import default_scenario, scenario_by_key

REPEATS = 5
TOKENS = 80  # about 60 words
BUDGET_S = 1.5
DONE = "layer by layer"


def open_page(browser: object, url: str, path: str, marker: str) -> float:
    """Seconds from opening ``path`` in a new session until ``marker`` shows and the run is over."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    started = time.perf_counter()
    page.goto(f"{url}/{path}")
    page.get_by_text(marker).first.wait_for(timeout=300_000)
    settle(page)
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def open_part(browser: object, url: str, token: str) -> float:
    """Seconds from opening ``token``'s page in a new session until its last view is drawn and the run is over."""
    return open_page(browser, url, f"part?emotion=fear&tokens={TOKENS}&part={token}", DONE)


def switch_parts(browser: object, url: str, tokens: list[str]) -> list[float]:
    """Seconds per part typed into an open part page's box (the same reply), each until its last view is drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/part?emotion=fear&tokens={TOKENS}&part=L20H3")
    page.get_by_text(DONE).first.wait_for(timeout=300_000)
    settle(page)
    times = []
    for token in tokens:
        box = page.get_by_placeholder("L20H3 or L10N123")
        box.fill(token)
        started = time.perf_counter()
        box.press("Enter")
        page.get_by_role("heading", name=f"{token}:").wait_for(timeout=60_000)
        page.get_by_text(DONE).first.wait_for(timeout=60_000)
        settle(page)
        times.append(time.perf_counter() - started)
    page.close()
    return times


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    bundle = load_model("default")
    results = load_results(EMBEDDED_NAME)
    base = Baseline("steered", "direction")
    kit = results.steering_kit(bundle)
    user = scenario_by_key()[default_scenario()].user
    prompt = base.prompt(bundle, user, "fear")
    settings = replace(SCORING_SETTINGS, max_new_tokens=TOKENS, classroom_safe=True)
    reply = generate(bundle, [prompt], settings, base.edits(kit, "fear"))[0]
    words = len(reply.text.split())
    passes = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        trace(bundle, prompt, reply.token_ids, base.edits(kit, "fear"), scenario=user)
        passes.append(time.perf_counter() - started)
    one_pass = statistics.median(passes)

    env = server_env(Path(tempfile.mkdtemp()))
    env["EMO_PRELOAD_MODEL"] = "1"
    process, url = start_server(env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            first = open_part(browser, url, "L20H3")
            same = statistics.median(open_part(browser, url, "L20H3") for _ in range(REPEATS))
            other = statistics.median(open_part(browser, url, "L25N100") for _ in range(REPEATS))
            circuit = statistics.median(open_page(browser, url, "circuit?emotion=fear", "Where the circuit lives") for _ in range(REPEATS))
            switched = statistics.median(switch_parts(browser, url, ["L14N721", "L20H3", "L25N100", "L3H1", "L19N921", "L22H4"]))
            browser.close()
    finally:
        stop_server(process)
    warm = switched + one_pass
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"reply: {len(reply.token_ids)} tokens, {words} words, {len(prompt.split())} words of prompt")
    print(f"one pass (attention, every part kept), in-process: {one_pass * 1000:.0f} ms (median of {REPEATS})")
    print(f"page, first open (writes the reply, then the pass): {first:.2f} s")
    print(f"page, same link in a new session (reply and pass shared): {same:.2f} s")
    print(f"page, another part of the same reply: {other:.2f} s")
    print(f"reference, the Circuit page (no model) in a new session: {circuit:.2f} s")
    print(f"another part typed into an open page (same reply): {switched:.2f} s")
    print(f"warm open in a session, page drawn plus one pass: {warm:.2f} s against a budget of {BUDGET_S} s ({warm / BUDGET_S:.2f} of it)")


if __name__ == "__main__":
    main()
