"""Many sessions generating at once on the one shared model, through Streamlit's own server and headless Chromium.

Each session opens the Knockout page from its own run link (emotion, parts switched off, zero or mean, baseline,
steering method, scenario, greedy or seeded sampling; 24 tokens). First the library computes every run's two replies
alone in this process (the page's own calls: prompt, baseline edits, knockout rows, decoding settings). Then the app
is served on 127.0.0.1, one session generates alone (the page's time per reply alone, and the judge loaded), and all
sessions open at once and press *Generate* within a second or two (a wave; ``--waves`` for more). The sessions'
generations are decoded together in the shared batch (``emo_core.batching``). Checked: every session's replies as the
page shows them equal the library's replies alone (hooks never reach another session's rows, and a row decodes in a
batch as alone); no session is refused; nothing hangs (every wait has a deadline); the wave takes at most
``WAVE_BOUND`` times one session alone; the server's memory (RSS, sampled every 0.1 s) peaks at most ``MEMORY_BOUND``
times its size before the wave, and with several waves it does not grow from one wave to the next.

Prints the CPU, sessions held at once, time per reply alone and at once, the wave's total time against one session
alone (and against as many solo runs), the sessions told to wait, and the server's memory; exits 1 when a check fails.
``--sessions`` (8, 16, 30 for the issue's checks), ``--tokens`` and ``--waves`` change the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode

import psutil
from playwright.sync_api import Page, sync_playwright

from bench.bench_generation import cpu_name
from tests.live_app import BROWSER_ARGS, CHROMIUM, VIEWPORT, server_env, start_server, stop_server

WAITING = ("The shared model is busy", "Another user is generating on the shared model")  # no room in the batch; other work
REFUSED = "already waiting"  # the line is full: the session was turned away
WAVE_BOUND = 2.5  # a wave of 8 at most this many times one session alone (issue 24)
DONE = "the grid above counts"  # the verdict under the two replies, written once both are read out
READY_TIMEOUT_MS = 180_000  # opening a page: the first one loads the model and the judge
WAVE_TIMEOUT_S = 600.0  # a whole wave of sessions, queued one behind the other
MEMORY_MARGIN = 1.10  # a later wave may end at most 10% above the first (allocator noise), never keep growing
MEMORY_BOUND = 1.5  # peak during a wave over the server's size before it: each session holds only its replies and read-outs
RUNS: tuple[dict[str, str], ...] = (
    {"emotion": "anger", "sel": "L23H1,L20H3", "mode": "zero", "baseline": "steered", "method": "direction"},
    {"emotion": "sadness", "sel": "L12H3,L10N123", "mode": "mean", "baseline": "steered", "method": "circuit"},
    {"emotion": "fear", "sel": "L15H0", "mode": "zero", "baseline": "asked", "scenario": "school_eval_01:negative"},
    {"emotion": "disgust", "sel": "L20N5,L21N7,L22N9", "mode": "mean", "baseline": "plain", "scenario": "work_eval_02:negative"},
    {"emotion": "surprise", "sel": "L5H2,L6H4", "mode": "zero", "baseline": "steered", "decode": "sample", "seed": "7"},
    {"emotion": "happiness", "sel": "L25H8", "mode": "mean", "baseline": "steered", "method": "circuit", "decode": "sample", "seed": "3"},
    {"emotion": "anger", "sel": "L28H2,L27N100", "mode": "zero", "baseline": "asked", "scenario": "relationships_eval_00:negative"},
    {"emotion": "sadness", "sel": "L18H6,L19H7,L17N900", "mode": "mean", "baseline": "steered", "scenario": "shopping_eval_01:neutral"},
)


@dataclass
class Outcome:
    """What one session showed: its two replies, the seconds from *Generate* to both replies, whether it was told to wait
    or turned away."""

    replies: tuple[str, str] = ("", "")
    seconds: float = float("nan")
    waited: bool = False
    done: bool = False
    refused: bool = False


class MemorySampler(threading.Thread):
    """Samples the resident memory of a process and its children every ``interval`` seconds; ``peak`` since ``reset``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.process, self.interval = psutil.Process(pid), interval
        self.peak = self.last = 0
        self._stop_event = threading.Event()

    def rss(self) -> int:
        processes = [self.process, *self.process.children(recursive=True)]
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.last = self.rss()
            self.peak = max(self.peak, self.last)
            self._stop_event.wait(self.interval)

    def reset(self) -> None:
        self.peak = self.last

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def run_params(count: int, tokens: int) -> list[dict[str, str]]:
    """``count`` Knockout run settings (``RUNS``, repeated with other scenarios' outcomes past eight), as link parameters."""
    runs = []
    for index in range(count):
        run = dict(RUNS[index % len(RUNS)])
        if index >= len(RUNS):
            run["scenario"] = f"travel_eval_0{index % 4}:negative"
        runs.append({**run, "tokens": str(tokens), "decode": run.get("decode", "greedy")})
    return runs


def link(run: dict[str, str]) -> str:
    return "/knockout?" + urlencode(run)


def library_replies(runs: list[dict[str, str]]) -> list[tuple[tuple[str, str], float]]:
    """Each run's two replies (baseline, knocked out) from the library alone, as the Knockout page computes them, and its seconds."""
    import random

    import emo_core as ec
    from emo_core.baselines import Baseline
    from emo_core.defaults import EMBEDDED_NAME
    from emo_core.generation import stream_replies
    from emo_core.interventions import on_rows
    from emo_core.parts import knockout, matched_random, parse_tokens
    from emo_core.results import load_results
    from emo_core.scoring import SCORING_SETTINGS
    from ui.run import default_scenario, scenario_by_key

    bundle = ec.load_model()
    results = load_results(EMBEDDED_NAME)
    kit, reading = results.steering_kit(bundle), results.reading()
    found = []
    for run in runs:
        emotion, baseline, mode = run["emotion"], run["baseline"], run["mode"]
        method = run.get("method", "direction") if baseline == "steered" else "direction"
        user = scenario_by_key()[run.get("scenario") or default_scenario()].user
        chosen = parse_tokens([run["sel"]])[0]
        control = matched_random(chosen, results.shape, random.Random(0))
        base = Baseline(baseline, method)
        rows = [
            *(on_rows(edit, (0, 1, 2)) for edit in base.edits(kit, emotion)),
            *knockout(chosen, mode, results.neutral_means, rows=(1,)),
            *knockout(control, mode, results.neutral_means, rows=(2,)),
        ]
        settings = replace(  # the live pages' decoding (``ui.live.session_decoding``), classroom-safe on as by default
            SCORING_SETTINGS,
            max_new_tokens=int(run["tokens"]),
            do_sample=run["decode"] == "sample",
            seed=int(run.get("seed", 0)),
            classroom_safe=True,
        )
        start = time.perf_counter()
        prompt = base.prompt(bundle, user, emotion)
        replies = list(stream_replies(bundle, [prompt] * 3, settings, rows, observe=reading.layers))[-1]
        found.append(((replies[0].text, replies[1].text), time.perf_counter() - start))
    return found


def same_text(shown: str, reply: str) -> bool:
    """Whether the page shows ``reply``: equal but for whitespace and the invisible space that glues a highlight on."""
    return "".join(shown.replace("\u200b", "").split()) == "".join(reply.split())


def settled(page: Page) -> None:
    """Wait until Streamlit has finished the page's current run (its running indicator is gone)."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=READY_TIMEOUT_MS)


def open_ready(browser: object, url: str) -> Page:
    """A new session (own browser context) on ``url``, once its *Generate* button is there and the page has settled."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(url)
    page.get_by_role("button", name="Generate").wait_for(timeout=READY_TIMEOUT_MS)
    settled(page)
    return page


def shown_replies(page: Page) -> tuple[str, str]:
    """The two replies as the page shows them: the markdown under each column's title."""
    columns = page.get_by_test_id("stColumn").filter(has_text="What the judge reads")
    texts = [" ".join(columns.nth(i).get_by_test_id("stMarkdown").nth(1).inner_text().split()) for i in range(2)]
    return texts[0], texts[1]


def solo(browser: object, url: str) -> Outcome:
    """One session alone: open, generate, wait for both replies."""
    page = open_ready(browser, url)
    start = time.perf_counter()
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(DONE).wait_for(timeout=WAVE_TIMEOUT_S * 1000)
    seconds = time.perf_counter() - start
    settled(page)
    outcome = Outcome(shown_replies(page), seconds, False, True)
    page.context.close()
    return outcome


def wave(browser: object, urls: list[str]) -> tuple[list[Outcome], float]:
    """Every session open at once and *Generate* pressed on each within a second; returns their outcomes and the wave's seconds.

    A single thread drives every page (Playwright's sync API is not thread-safe) and polls each for the waiting message
    and for the end of its run, until all are done or ``WAVE_TIMEOUT_S`` passes.
    """
    pages = [open_ready(browser, url) for url in urls]
    outcomes = [Outcome() for _ in pages]
    starts = []
    for page in pages:
        page.get_by_role("button", name="Generate").click()
        starts.append(time.perf_counter())
    deadline = starts[0] + WAVE_TIMEOUT_S
    while not all(outcome.done for outcome in outcomes) and time.perf_counter() < deadline:
        for page, outcome, start in zip(pages, outcomes, starts, strict=True):
            if outcome.done:
                continue
            outcome.waited = outcome.waited or any(page.get_by_text(text).count() > 0 for text in WAITING)
            outcome.refused = outcome.refused or page.get_by_text(REFUSED).count() > 0
            if page.get_by_text(DONE).count() > 0:
                outcome.seconds, outcome.done = time.perf_counter() - start, True
        time.sleep(0.05)
    total = time.perf_counter() - starts[0]
    for page, outcome in zip(pages, outcomes, strict=True):
        if outcome.done:
            settled(page)
            outcome.replies = shown_replies(page)
        page.context.close()
    return outcomes, total


@dataclass
class Measured:
    """One load test: the library's replies alone, one session alone on the page, the waves, the server's memory (bytes)."""

    runs: list[dict[str, str]]
    alone: list[tuple[tuple[str, str], float]]  # the library's (replies, seconds) per run
    first: Outcome  # the first run alone on the page
    waves: list[tuple[list[Outcome], float]]  # (outcomes, the wave's seconds)
    before: int  # after the first run alone
    ends: list[int]  # after each wave
    peaks: list[int]  # during each wave


def measure(runs: list[dict[str, str]], waves: int = 1) -> Measured:
    """The library's replies alone, then the app on 127.0.0.1: one session alone, then ``waves`` times all at once."""
    alone = library_replies(runs)
    print(f"library replies alone: {len(alone)} runs, {sum(seconds for _, seconds in alone):.1f} s", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start_server({**server_env(Path(scratch)), "EMO_PRELOAD_MODEL": "1"})
        sampler = MemorySampler(process.pid)
        sampler.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
                first = solo(browser, url + link(runs[0]))
                print(f"one session alone: {first.seconds:.1f} s", file=sys.stderr, flush=True)
                measured = Measured(runs, alone, first, [], sampler.last, [], [])
                for _ in range(waves):
                    sampler.reset()
                    measured.waves.append(wave(browser, [url + link(run) for run in runs]))
                    print(f"wave {len(measured.waves)}/{waves}: {measured.waves[-1][1]:.1f} s", file=sys.stderr, flush=True)
                    measured.ends.append(sampler.last)
                    measured.peaks.append(sampler.peak)
                browser.close()
        finally:
            sampler.stop()
            stop_server(process)
    return measured


def _unlike(outcome: Outcome, alone: tuple[str, str]) -> bool:
    return not all(same_text(shown, reply) for shown, reply in zip(outcome.replies, alone, strict=True))


def failures(measured: Measured) -> list[str]:
    """Every check that failed, in words: unfinished sessions, replies unlike the library's alone, no waiting message, memory."""
    found = []
    if _unlike(measured.first, measured.alone[0][0]):
        found.append(f"{link(measured.runs[0])} alone showed {measured.first.replies}, the library {measured.alone[0][0]}")
    for number, (outcomes, _) in enumerate(measured.waves, start=1):
        if unfinished := sum(not outcome.done for outcome in outcomes):
            found.append(f"wave {number}: {unfinished} sessions did not finish within {WAVE_TIMEOUT_S:.0f} s")
        for outcome, (replies, _), run in zip(outcomes, measured.alone, measured.runs, strict=True):
            if outcome.done and _unlike(outcome, replies):
                found.append(f"wave {number}: {link(run)} showed {outcome.replies} at once, the library {replies} alone")
        if refused := sum(outcome.refused for outcome in outcomes):
            found.append(f"wave {number}: {refused} of {len(outcomes)} sessions were turned away")
        if len(outcomes) <= 8 and (ratio := measured.waves[number - 1][1] / measured.first.seconds) > WAVE_BOUND:
            found.append(f"wave {number}: {ratio:.2f}x one session alone, over {WAVE_BOUND}x")
        if measured.peaks[number - 1] > measured.before * MEMORY_BOUND:
            found.append(
                f"wave {number}: memory peaked at {measured.peaks[number - 1] >> 20} MiB, over {MEMORY_BOUND}x {measured.before >> 20} MiB"
            )
    for number in range(1, len(measured.ends)):
        if measured.ends[number] > measured.ends[0] * MEMORY_MARGIN:
            grown = f"{measured.ends[0] >> 20} MiB after wave 1 to {measured.ends[number] >> 20} MiB after wave {number + 1}"
            found.append(f"memory grew from {grown}")
    return found


def report(measured: Measured) -> None:
    """Print the figures: machine, sessions, time per reply alone and at once, equality, waiting messages, memory."""
    mib = 1 << 20
    sessions, alone = len(measured.runs), measured.first.seconds
    library = statistics.median(seconds for _, seconds in measured.alone)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; Knockout page, {measured.runs[0]['tokens']} tokens, 3 rows per generation")
    print(f"sessions held at once: {sessions} ({len(measured.waves)} wave(s) of fresh sessions)")
    print(f"time per reply alone: {alone:5.1f} s on the page (Generate to both replies read out); library generation {library:4.1f} s")
    for number, (outcomes, total) in enumerate(measured.waves, start=1):
        seconds = [outcome.seconds for outcome in outcomes if outcome.done]
        mean = statistics.mean(seconds) if seconds else float("nan")
        same = sum(not _unlike(outcome, replies) for outcome, (replies, _) in zip(outcomes, measured.alone, strict=True))
        print(
            f"wave {number}: {len(seconds)}/{sessions} done in {total:5.1f} s = {total / alone:.2f}x one session alone, "
            f"{total / (alone * sessions):.2f}x {sessions} runs alone; "
            f"per reply mean {mean:5.1f} s, max {max(seconds, default=float('nan')):5.1f} s; replies equal to alone: {same}/{sessions}; "
            f"told to wait: {sum(outcome.waited for outcome in outcomes)}/{sessions}; turned away: {sum(o.refused for o in outcomes)}"
        )
    pairs = enumerate(zip(measured.peaks, measured.ends, strict=True), start=1)
    waves = "; ".join(f"wave {n} peak {peak / mib:.0f}, end {end / mib:.0f}" for n, (peak, end) in pairs)
    peak = max(measured.peaks) / measured.before
    print(f"server memory (RSS, MiB): before the wave {measured.before / mib:.0f}; {waves}; peak {peak:.2f}x before")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="sessions generating at once (the issue asks for at least 8)")
    parser.add_argument("--tokens", type=int, default=24, help="reply length in tokens (8 to 128)")
    parser.add_argument("--waves", type=int, default=1, help="waves of sessions at once (2 or more also checks that memory does not grow)")
    args = parser.parse_args()
    if args.sessions < 2 or not 8 <= args.tokens <= 128 or args.waves < 1:
        parser.error("--sessions must be at least 2, --tokens from 8 to 128 and --waves at least 1")
    measured = measure(run_params(args.sessions, args.tokens), args.waves)
    report(measured)
    failed = failures(measured)
    print("checks: " + ("all passed" if not failed else f"{len(failed)} failed"), *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
