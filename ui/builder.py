"""The sidebar box for another model: enter a Hugging Face id or a folder, and build its saved results with a progress bar."""

from __future__ import annotations

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


def build_box(models: list[str]) -> None:
    """An expander with a model box; offers to show a model with results, or to build them."""
    with st.expander("Another model…", icon=":material/add:"):
        source = st.text_input(
            "Hugging Face id or local folder",
            key=SOURCE,
            placeholder="Qwen/Qwen2.5-0.5B-Instruct",
            help="A chat model of the Llama, Mistral, Qwen, Gemma or GPT-2 families, from the Hub or a folder on this computer.",
        ).strip()
        if not source:
            st.caption(glossary.MODEL)
            return
        if source in models:
            st.button("Show its results", on_click=apply, args=({MODEL: source},), key="build_show")
            return
        st.caption(BUILD_NOTE)
        if st.button("Build its results", type="primary", key="build_go"):
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
