"""A real browser clicks through the app: every page, the layer slider, a shared link, a bad link; screenshots are saved.

Needs Chromium (Debian's ``/usr/bin/chromium``) and Playwright; skipped when either is missing. Screenshots go
to ``$SCREENSHOT_DIR`` when set (look at them), else to pytest's temporary folder.
"""

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

import pytest

from emo_core.models import EMBEDDED_NAME
from emo_core.results import available_caches
from tests.synthetic_cache import write_synthetic_cache
from ui.data import RESULTS_DIR_ENV

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 2400}  # tall: Streamlit scrolls inside the page, so full_page shots stop at the window
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not start")


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free port; returns the process and its URL once healthy."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port)]
    command += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
    except (RuntimeError, TimeoutError):
        process.kill()
        raise
    return process, url


def server_env(tmp_root: Path) -> dict[str, str]:
    """The shipped cache when present, else a synthetic one; the model must never be needed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if EMBEDDED_NAME not in available_caches():
        write_synthetic_cache(tmp_root, EMBEDDED_NAME)
        env[RESULTS_DIR_ENV] = str(tmp_root)
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server(server_env(tmp_path_factory.mktemp("results")))
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch(p: object) -> object:
    return p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)


def settle(page: object) -> None:
    """Wait until Streamlit has finished the current run."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(500)


def test_click_through_every_page(server: str, shots: Path) -> None:
    with playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server)
        page.get_by_role("heading", name="Emotion Circuit Explorer").wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=shots / "1_home.png")

        page.get_by_test_id("stSidebarNav").get_by_text("Clusters").click()
        page.get_by_role("heading", name="Emotion clusters").wait_for()
        settle(page)
        page.screenshot(path=shots / "2_clusters.png")
        layer_before = page.url.split("layer=")[1].split("&")[0]

        slider = page.get_by_test_id("stSidebar").get_by_role("slider")
        slider.focus()
        slider.press("Home")
        settle(page)
        assert "layer=0" in page.url and layer_before != "0"
        page.get_by_text("At layer 0,").wait_for()
        page.screenshot(path=shots / "3_clusters_layer0.png")
        slider.press("ArrowRight")
        settle(page)
        assert "layer=1" in page.url
        page.get_by_text("At layer 1,").wait_for()

        page.get_by_test_id("stSidebarNav").get_by_text("Circuit").click()
        page.get_by_role("heading", name="The anger circuit").wait_for()
        settle(page)
        assert "layer=1" in page.url
        page.get_by_role("button", name="Select the anger circuit").click()
        settle(page)
        assert "sel=" in page.url
        page.screenshot(path=shots / "4_circuit.png")
        shared = page.url

        other = browser.new_page(viewport=VIEWPORT)
        other.goto(shared.replace("emotion=anger", "emotion=fear"))
        other.get_by_role("heading", name="The fear circuit").wait_for(timeout=60_000)
        settle(other)
        assert "layer=1" in other.url and "sel=" in other.url

        other.goto(f"{server}/clusters?layer=banana&emotion=rage&model=nope")
        other.get_by_text("is not a layer number").wait_for(timeout=60_000)
        settle(other)
        other.screenshot(path=shots / "5_bad_link.png")
        assert other.get_by_test_id("stException").count() == 0
        browser.close()
