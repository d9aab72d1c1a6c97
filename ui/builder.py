"""The sidebar box for another model: enter a Hugging Face id or a folder, and build its saved results with a progress bar."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

import emo_core as ec
from emo_core.store import read_manifest
from ui import glossary
from ui.data import results_root
from ui.state import MODEL, apply, request

SOURCE = "build_source"
BUILD_NOTE = (
    "It has no saved results yet. Building them runs about 2,300 prompts through the model and then ranks every "
    "head and neuron: roughly 10 to 15 minutes on a laptop CPU for a small (135M) model, much longer for bigger ones. "
    "Keep this tab open while it runs."
)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # 'gpt2', 'Qwen/Qwen2.5-0.5B-Instruct'
PATH_START = re.compile(r"(~|\.{1,2}([/\\]|$)|[/\\]|[A-Za-z]:[/\\])")  # ~, ./, ../, ., .., /, \, C:\


def looks_like_folder(source: str) -> bool:
    """Whether ``source`` is a path rather than a Hugging Face id.

    A path starts with ``/``, ``./``, ``../``, ``~`` or a drive (``C:\\``), or holds a separator that no
    ``org/name`` id has (two slashes, a backslash). ``org/name`` itself counts as an id: the library still
    opens a folder of that name if one exists.
    """
    return bool(PATH_START.match(source)) or not HUB_ID.fullmatch(source)


def folder_problem(source: str) -> str | None:
    """Why ``source`` cannot be a model folder (it looks like a path but is missing or a file), else None."""
    if not looks_like_folder(source):
        return None
    folder = Path(source).expanduser()
    if folder.is_dir():
        return None
    where = "" if folder.is_absolute() else f" (looked for {folder.resolve()})"
    what = "is a file, not a folder" if folder.exists() else "does not exist on this computer"
    return (
        f"The folder {source} {what}{where}. Enter the folder that holds the model's config.json and weights, "
        "or a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct."
    )


@st.fragment
def build_box(models: list[str]) -> None:
    """An expander with a model box; offers to show a model with results, or to build them.

    A fragment, and the box commits while you type (after a short pause): a message about the previous text
    goes as soon as the text changes, without rerunning the page behind it.
    """
    with st.expander("Another model…", icon=":material/add:"):
        source = st.text_input(
            "Hugging Face id or local folder",
            key=SOURCE,
            placeholder="Qwen/Qwen2.5-0.5B-Instruct",
            help="A chat model of the Llama, Mistral, Qwen, Gemma or GPT-2 families, from the Hub or a folder on this computer.",
            live=True,
        ).strip()
        if not source:
            st.caption(glossary.MODEL)
            return
        if source in models:
            if st.button("Show its results", on_click=apply, args=({MODEL: source},), key="build_show"):
                st.rerun()  # the whole app, not just this box
            return
        st.caption(BUILD_NOTE)
        if st.button("Build its results", type="primary", key="build_go"):
            problem = folder_problem(source)
            if problem:
                st.error(problem, icon=":material/folder_off:")
            else:
                _build(source)


def _build(source: str) -> None:
    """Run the pipeline with a progress bar; on success switch the app to the new model."""
    bar = st.progress(0.0, text="Starting…")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done} of {total}")

    try:
        from emo_core.pipeline import build  # heavy imports; only needed when building

        folder = build(source, root=results_root(), progress=progress)
        model_id = read_manifest(folder).model_id
    except ImportError:
        bar.empty()
        st.error("Building results is not available in this version of the library; run `python -m emo_core build` instead.")
        return
    except ec.EmoCoreError as error:
        bar.empty()
        st.error(f"Could not build results for '{source}'. {error}", icon=":material/error:")
        return
    bar.empty()
    request({MODEL: model_id})
    st.rerun()
