"""Run the app for real: a streamlit server on a free port and headless Chromium (shared by the browser test and the benchmark)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from emo_core.defaults import EMBEDDED_NAME
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
