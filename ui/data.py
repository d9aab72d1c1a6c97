"""Where pages get their data: one cached ``Results`` per model and one lazily loaded model per process.

Results are read from disk once per process and shared by every session (``st.cache_resource``), so
switching layers never re-reads files; the model itself is only loaded by views that generate text,
so pages that show saved results never wait for it.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import emo_core as ec
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import CACHE_ROOT, Results, available_caches, load_results
from ui.state import MODEL

RESULTS_DIR_ENV = "EMO_RESULTS_DIR"


def results_root() -> Path:
    """The folder of saved results (``cached_activations/``, or ``$EMO_RESULTS_DIR``)."""
    return Path(os.environ.get(RESULTS_DIR_ENV) or CACHE_ROOT)


def model_choices() -> list[str]:
    """Model ids the picker offers: the built-in default first, then every model with saved results."""
    return [EMBEDDED_NAME, *(model for model in available_caches(results_root()) if model != EMBEDDED_NAME)]


def model_label(model_id: str) -> str:
    """How the picker names a model."""
    return f"{model_id} (built in)" if model_id == EMBEDDED_NAME else model_id


def model_source(model_id: str) -> str:
    """What ``emo_core.load_model`` needs for a model id: ``"default"`` for the built-in model."""
    return ec.DEFAULT_MODEL if model_id == EMBEDDED_NAME else model_id


@st.cache_resource(max_entries=4, show_spinner=False)
def _results(model_id: str, root: str) -> Results:
    return load_results(model_id, Path(root))


def results_for(model_id: str) -> Results:
    """The saved results of ``model_id`` (raises ``CacheError`` with what to do when missing or damaged)."""
    return _results(model_id, str(results_root()))


def page_results() -> Results:
    """The selected model's results for a page, or a friendly message and the page stops (the sidebar already explains)."""
    try:
        return results_for(st.session_state[MODEL])
    except ec.EmoCoreError as error:
        st.info(f"This page needs saved results for the chosen model. {error} Pick another model in the sidebar meanwhile.")
        st.stop()


@st.cache_resource(max_entries=1, show_spinner=False)
def _bundle(source: str) -> ec.ModelBundle:
    return ec.load_model(source)


PRELOAD_ENV = "EMO_PRELOAD_MODEL"  # "0" turns the background load off (the tests do, so no test loads the model by surprise)


def _load_quietly(source: str) -> None:
    try:
        _bundle(source)
    except ec.EmoCoreError:
        pass  # the first page that needs the model shows why it could not load


PRELOAD_DELAY_S = 3.0  # let the first page reach the browser before the background import competes with it for the interpreter


@dataclass(frozen=True)
class _Preload:
    wanted: threading.Event  # a page needs the libraries now: stop waiting out the delay
    imported: threading.Event


@st.cache_resource(show_spinner=False)
def _preloader() -> _Preload:
    preload = _Preload(threading.Event(), threading.Event())

    def work() -> None:
        preload.wanted.wait(PRELOAD_DELAY_S)
        try:  # everything a live page imports, in this one thread: transformers' lazy imports are not safe from two threads at once
            for module in ("emo_core.knockout", "emo_core.judge", "ui.live"):
                importlib.import_module(module)
        finally:
            preload.imported.set()
        if os.environ.get(PRELOAD_ENV, "1") != "0":
            _load_quietly(ec.DEFAULT_MODEL)

    threading.Thread(target=work, name="emo-preload", daemon=True).start()
    return preload


def preload_default_model() -> None:
    """Start importing the live pages' libraries and loading the built-in model in the background, once per process and
    ``PRELOAD_DELAY_S`` after the first page (with the import right behind it, Home was usable about a second later in a cold start),
    so the first *Generate* need not wait. A session that asks for the model meanwhile waits for this same load."""
    _preloader()


def wait_for_library() -> None:
    """Wait until the background import is done, starting it at once if it is still waiting out its delay (a page that
    generates text imports the same libraries)."""
    preload = _preloader()
    preload.wanted.set()
    preload.imported.wait()


def model_bundle(model_id: str) -> ec.ModelBundle | None:
    """The model itself, loaded once per process with a spinner; ``None`` (and a message) if it cannot load."""
    wait_for_library()
    try:
        with st.spinner(f"Loading {model_id} (only the first time; a few seconds)…"):
            return _bundle(model_source(model_id))
    except ec.EmoCoreError as error:
        st.error(f"The model could not be loaded: {error}", icon=":material/error:")
        return None
