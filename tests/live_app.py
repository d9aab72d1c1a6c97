"""Run the app for real: a streamlit server on a free port and headless Chromium (shared by the browser test and the benchmark)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from emo_core.defaults import EMBEDDED_NAME
from emo_core.parts import parse_token
from emo_core.results import available_caches
from tests.synthetic_cache import write_synthetic_cache
from ui.data import RESULTS_DIR_ENV

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 2400}  # tall: Streamlit scrolls inside the page, so screenshots stop at the window


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(synthetic_root: Path) -> dict[str, str]:
    """``$EMO_RESULTS_DIR`` if set, else the shipped cache when present, else a synthetic one in ``synthetic_root``; never the Hub."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if RESULTS_DIR_ENV not in env and EMBEDDED_NAME not in available_caches():
        write_synthetic_cache(synthetic_root, EMBEDDED_NAME)
        env[RESULTS_DIR_ENV] = str(synthetic_root)
    return env


def start_server(env: dict[str, str], timeout: float = 90, script: str = "app.py") -> tuple[subprocess.Popen, str]:
    """``<script>`` served on a free port as ``make run`` serves it; returns the process and its URL once it answers its health check."""
    port = free_port()
    launcher = ["ui.serve"] if script == "app.py" else ["streamlit", "run"]
    command = [sys.executable, "-m", *launcher, script, "--server.headless", "true", "--server.port", str(port)]
    command += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError("streamlit did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def settle(page: object) -> None:
    """Wait until Streamlit has finished the current run (its running indicator is gone)."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def link_shows(page: object, *fragments: str) -> None:
    """Wait until the address bar holds every fragment (a rerun has written its link), then until that run has finished.

    Waiting a fixed time instead lost races on a loaded machine, where a rerun can start late.
    """
    page.wait_for_function("parts => parts.every(part => location.href.includes(part))", arg=list(fragments), timeout=60_000)
    settle(page)


def tooltip_text(page: object) -> str:
    """The text of Vega's tooltip ('' when none is shown)."""
    return page.evaluate("document.getElementById('vg-tooltip-element')?.innerText ?? ''")


def sweep(page: object, chart: object, step: int) -> Iterator[tuple[int, int, str]]:
    """Move the pointer over ``chart`` row by row; at each stop, where it is and the tooltip's text."""
    box = chart.bounding_box()
    for y in range(int(box["y"]) + step, int(box["y"] + box["height"]) - step, step):
        for x in range(int(box["x"]) + step, int(box["x"] + box["width"]) - step, step):
            page.mouse.move(x, y)
            yield x, y, tooltip_text(page)


def head_under_pointer(page: object) -> str | None:
    """The head the head grid's tooltip names (``L23H1`` from "head L23H1 importance 0.12 now on"), if any."""
    words = tooltip_text(page).split()
    return words[words.index("head") + 1] if "head" in words[:-1] else None


def cell_positions(page: object, chart: object, wanted: set[str], step: int = 6) -> dict[str, tuple[int, int]]:
    """Where on the head grid (layers across, heads down) the pointer makes the tooltip name each wanted head.

    One pass along the grid's middle row finds each layer's column and one down its middle column each
    head's row: a few hundred pointer moves instead of a sweep over every cell.
    """
    box = chart.bounding_box()
    middle_x, middle_y = int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] / 2)
    columns: dict[int, list[int]] = {}
    rows: dict[int, list[int]] = {}
    for x in range(int(box["x"]), int(box["x"] + box["width"]), step):
        page.mouse.move(x, middle_y)
        if token := head_under_pointer(page):
            columns.setdefault(parse_token(token).layer, []).append(x)
    for y in range(int(box["y"]), int(box["y"] + box["height"]), step):
        page.mouse.move(middle_x, y)
        if token := head_under_pointer(page):
            rows.setdefault(parse_token(token).index, []).append(y)
    found = {}
    for token in wanted:
        head = parse_token(token)
        if head.layer in columns and head.index in rows:
            xs, ys = columns[head.layer], rows[head.index]
            found[token] = ((xs[0] + xs[-1]) // 2, (ys[0] + ys[-1]) // 2)
    return found


def click_head(page: object, chart: object, token: str, position: tuple[int, int], timeout: float = 60) -> None:
    """Click the grid cell of ``token`` once the grid answers the pointer there.

    A grid redrawn by the last click may still be mounting, or sit a little lower: the pointer is
    nudged until the tooltip names the head (a grid mounted under a still pointer shows none), and
    the grid is swept again when the cell is not where it was.
    """
    deadline = time.monotonic() + timeout
    nudge = 0
    while head_under_pointer(page) != token:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the head grid never showed {token} under the pointer")
        nudge += 1
        page.mouse.move(position[0], position[1] + nudge % 2)
        if nudge % 20 == 0:
            position = cell_positions(page, chart, {token}).get(token, position)
        page.wait_for_timeout(100)
    page.mouse.click(position[0], position[1] + nudge % 2)
