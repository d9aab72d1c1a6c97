"""Dashboard speed in a real browser (headless Chromium against the app served as ``make run`` serves it), from a cold start.

Prints: cold start to the first usable page (server start, imports, cache read and first render) with the
browser opening the page the moment the server answers, and with a person's pause (the page opened
``PAUSE_S`` after the server answers, timed from opening it; ``ui.serve`` imports the first page's
libraries meanwhile); a layer switch on the Clusters page, right after the cold start (while the built-in
model loads in the background) and again once the server is idle; a page switch. Medians over repeated switches.

A layer switch is timed three ways: end to end as the test driver sees it (key press sent until the new
layer's sentence is visible), and inside the page from the key event until the sentence is in the page and
until the frame showing it is painted (the user's wait, without the driver's round trips). The same switch
on a bare Streamlit app (one slider and one sentence) is measured in the same run, so the figures also read
as a ratio to what any Streamlit rerun costs on this machine.
Uses the shipped cache of the default model (or a synthetic one before it exists; the output says which).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, sync_playwright

from bench.bench_generation import cpu_name
from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, server_env, settle, start_server, stop_server
from ui.data import RESULTS_DIR_ENV

REPEATS = 30
PAUSE_S = 5.0
BARE_LAYERS = 30
BARE_APP = f"""import streamlit as st
layer = st.sidebar.slider("Layer", 0, {BARE_LAYERS - 1}, key="layer")
st.markdown(f"At layer {{layer}}, a bare Streamlit app.")
"""
# Records, for the next key press, when a Markdown block starting with the target text appears and when
# the frame after it is painted (two animation frames later).
WATCH = """target => {
  window.__latency = null;
  let pressed = null;
  document.addEventListener('keydown', event => { pressed = event.timeStamp; }, {capture: true, once: true});
  const observer = new MutationObserver(() => {
    if (pressed === null) return;
    const blocks = document.querySelectorAll('[data-testid="stMarkdownContainer"]');
    if (![...blocks].some(block => block.innerText.startsWith(target))) return;
    observer.disconnect();
    const seen = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.__latency = {shown: seen - pressed, painted: performance.now() - pressed};
    }));
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def timed(page: Page, action: Callable[[], object], wait_for: str) -> float:
    """Seconds from ``action`` until ``wait_for`` (text drawn after the page's main chart) is visible."""
    start = time.perf_counter()
    action()
    page.get_by_text(wait_for).first.wait_for(timeout=60_000)
    elapsed = time.perf_counter() - start
    settle(page)
    return elapsed


def layer_switches(page: Page, slider: Locator, n_layers: int) -> dict[str, list[float]]:
    """Move ``slider`` back and forth over the layers ``REPEATS`` times; seconds per switch, three ways."""
    slider.focus()
    slider.press("Home")
    page.get_by_text("At layer 0,").first.wait_for(timeout=60_000)
    settle(page)
    times: dict[str, list[float]] = {"driver": [], "shown": [], "painted": []}
    layer, last = 0, n_layers - 1
    for step in range(1, REPEATS + 1):
        phase = step % (2 * last)
        target = phase if phase <= last else 2 * last - phase
        key = "ArrowRight" if target > layer else "ArrowLeft"
        page.evaluate(WATCH, f"At layer {target},")
        times["driver"].append(timed(page, lambda key=key: slider.press(key), f"At layer {target},"))
        page.wait_for_function("window.__latency !== null")
        latency = page.evaluate("window.__latency")
        times["shown"].append(latency["shown"] / 1000)
        times["painted"].append(latency["painted"] / 1000)
        layer = target
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    print(
        f"{label}: painted {ms(times['painted']):.0f} ms (max {max(times['painted']) * 1000:.0f}), "
        f"in the page {ms(times['shown']):.0f} ms, driver end to end {ms(times['driver']):.0f} ms (medians of {REPEATS})"
    )


def bare_streamlit(browser_page: Page) -> dict[str, list[float]]:
    """Layer switches on a one-slider Streamlit app: the floor any rerun pays on this machine."""
    folder = Path(tempfile.mkdtemp())
    (folder / "bare.py").write_text(BARE_APP)
    process, url = start_server(server_env(folder), script=str(folder / "bare.py"))
    try:
        browser_page.goto(url)
        return layer_switches(browser_page, browser_page.get_by_test_id("stSidebar").get_by_role("slider"), BARE_LAYERS)
    finally:
        stop_server(process)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(process: subprocess.Popen, quiet_s: float = 1.0, timeout: float = 120.0) -> float:
    """Seconds until the server used under 5% of a core over ``quiet_s`` (its background model load has finished)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        before = cpu_seconds(process.pid)
        time.sleep(quiet_s)
        if cpu_seconds(process.pid) - before < 0.05 * quiet_s:
            break
    return time.perf_counter() - start


def usable(page: Page) -> None:
    """Wait until Home's title and tour button are drawn and the first run has finished."""
    page.get_by_role("heading", name="Emotion Circuit Explorer").wait_for(timeout=60_000)
    page.get_by_role("button", name="Start the tour →").wait_for()
    settle(page)


def opened_after_a_pause(page: Page, env: dict[str, str]) -> float:
    """Seconds from opening the page to a usable Home, on a server that has been up for ``PAUSE_S``."""
    process, url = start_server(env)
    try:
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        page.goto(url)
        usable(page)
        return time.perf_counter() - start
    finally:
        stop_server(process)


def main() -> None:
    env = server_env(Path(tempfile.mkdtemp()))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"results: {env.get(RESULTS_DIR_ENV, 'the shipped cache')}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        start = time.perf_counter()
        process, url = start_server(env)
        server_up = time.perf_counter() - start
        try:
            page.goto(url)
            usable(page)
            print(f"cold start to first usable page: {time.perf_counter() - start:.2f} s (server answering after {server_up:.2f} s)")

            nav = page.get_by_test_id("stSidebarNav")
            first = timed(page, lambda: nav.get_by_text("Clusters").click(), "Where in the model do the emotions separate?")
            print(f"first visit to Clusters: {first * 1000:.0f} ms")
            slider = page.get_by_test_id("stSidebar").get_by_role("slider")
            n_layers = int(slider.evaluate("element => element.max")) + 1
            loading_times = layer_switches(page, slider, n_layers)
            idle_after = wait_until_idle(process)
            print(f"server idle (background model load done) {idle_after:.1f} s after the switches above")
            app_times = layer_switches(page, slider, n_layers)

            page_times = []
            for _ in range(REPEATS // 3):
                page_times.append(timed(page, lambda: nav.get_by_text("Circuit").click(), "Where the circuit lives"))
                page_times.append(timed(page, lambda: nav.get_by_text("Clusters").click(), "Where in the model do the emotions separate?"))
            print(f"page switch (Clusters <-> Circuit): median {ms(page_times):.0f} ms, max {max(page_times) * 1000:.0f} ms")
        finally:
            stop_server(process)
        paused = opened_after_a_pause(browser.new_page(viewport=VIEWPORT), env)
        print(f"first usable page, opened {PAUSE_S:.0f} s after the server answered: {paused:.2f} s from opening it")
        bare_times = bare_streamlit(page)
        browser.close()
    report("layer switch on Clusters, right after the cold start (the model loading in the background)", loading_times)
    report("layer switch on Clusters, server otherwise idle", app_times)
    report("the same switch on a bare Streamlit app", bare_times)
    print(f"layer switch / bare Streamlit rerun (painted): {ms(app_times['painted']) / ms(bare_times['painted']):.1f}x")


if __name__ == "__main__":
    main()
