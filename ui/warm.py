"""The first page's libraries, imported in the background once the server answers (see ``ui.serve``).

Importing them while the server itself starts slowed its start by as much (the two share one
interpreter lock), so the thread waits until the server is serving and then overlaps the browser's
own loading.

``app.py`` calls ``wait()`` before its own imports, so no module is ever imported from two threads at
once; without ``start()`` (plain ``streamlit run``, tests) there is nothing to wait for.
"""

from __future__ import annotations

import importlib
import threading
import time

from streamlit.runtime import Runtime
from streamlit.runtime.runtime import RuntimeState

FIRST_PAGE = ("pandas", "ui.data", "ui.pages", "ui.run", "ui.sidebar", "ui.state", "ui.tour", "ui.replies")

START_WAIT_S = 30.0  # import anyway after this long, should the server never report that it started

_done = threading.Event()
_done.set()


def _serving() -> bool:
    runtime = Runtime.instance() if Runtime.exists() else None
    return runtime is not None and runtime.state is not RuntimeState.INITIAL


def _import_first_page() -> None:
    try:
        deadline = time.monotonic() + START_WAIT_S
        while not _serving() and time.monotonic() < deadline:
            time.sleep(0.02)
        for module in FIRST_PAGE:
            importlib.import_module(module)
    finally:
        _done.set()


def start() -> None:
    """Import the first page's libraries in a background thread."""
    _done.clear()
    threading.Thread(target=_import_first_page, name="emo-warm", daemon=True).start()


def wait() -> None:
    """Return once the background import (if any) has finished."""
    _done.wait()
