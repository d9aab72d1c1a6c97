"""The sidebar every page shares: model, layer and emotion pickers, the selection, and the settings download."""

from __future__ import annotations

import streamlit as st

import emo_core as ec
from emo_core.parts import MAX_PARTS, count, out_of_range, parse_tokens
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS
from ui import glossary
from ui.builder import build_box
from ui.data import model_label, results_for
from ui.narrative import best_layer
from ui.pages import PAGES, PageSpec
from ui.palette import emotion_label
from ui.run import CLASSROOM
from ui.state import EMOTION, LAYER, MODEL, SELECTION, clamp_layer, current, note_problems


def draw(models: list[str], page: PageSpec) -> Results | None:
    """Draw the shared sidebar and return the chosen model's results (``None``, with a message, when they cannot load)."""
    if st.session_state.get(MODEL) not in models:
        note_problems([f"The results for '{st.session_state.get(MODEL)}' are gone; showing {models[0]}."])
        st.session_state[MODEL] = models[0]
    with st.sidebar:
        st.selectbox("Model", models, key=MODEL, persist_state="session", format_func=model_label, help=glossary.MODEL)
        build_box(models)
        try:
            results = results_for(st.session_state[MODEL])
        except ec.EmoCoreError as error:
            st.error(str(error), icon=":material/error:")
            return None
        _settle(results)
        st.slider("Layer", 0, results.n_layers - 1, key=LAYER, persist_state="session", help=glossary.LAYER, disabled=not page.uses_layer)
        if not page.uses_layer:
            layered = " and ".join(spec.title for spec in PAGES if spec.uses_layer)
            st.caption(f"The layer applies to {layered}; this page does not use it.")
        st.selectbox("Emotion", EMOTIONS, key=EMOTION, persist_state="session", format_func=emotion_label, help=glossary.EMOTION)
        _selection_summary()
        st.toggle(
            "Classroom-safe",
            key=CLASSROOM,
            persist_state="session",
            help="On: replies can never contain a slur or profanity from the project's word list, and steering is capped at the "
            "strongest strength the build checked as fluent. The link records it.",
        )
        st.divider()
        st.caption("The address bar always links to this view: copy it to share exactly what you see.")
        view = current()
        st.download_button(
            "Download these settings (JSON)",
            view.as_json(page.title),
            f"settings_{page.title.lower()}.json",
            "application/json",
            icon=":material/settings:",
            key="settings_json",
        )
    return results


def _settle(results: Results) -> None:
    """Fit the session's layer and selection to this model before the widgets are drawn."""
    if LAYER not in st.session_state:
        st.session_state[LAYER] = best_layer(results)
    layer, problem = clamp_layer(int(st.session_state[LAYER]), results.n_layers)
    st.session_state[LAYER] = layer
    shape = results.shape
    components, _ = parse_tokens(st.session_state.get(SELECTION, []))
    if len(components) > MAX_PARTS:  # a link or many clicks; the knockout would refuse them all
        note_problems([f"Kept the first {MAX_PARTS} of {len(components):,} selected parts, the most that can be switched off at once."])
        components = components[:MAX_PARTS]
    reasons = {c.token: out_of_range(c, shape["n_layers"], shape["n_heads"], shape["d_mlp"]) for c in components}
    st.session_state[SELECTION] = [token for token, reason in reasons.items() if reason is None]
    note_problems([problem] if problem else [])
    note_problems([f"Dropped from the selection: {reason}" for reason in reasons.values() if reason])


def _selection_summary() -> None:
    """How many components are selected (the selection travels in the link to the knockout view)."""
    selected = st.session_state.get(SELECTION, [])
    if selected:
        st.caption(f"Selected for knockout: {count(len(selected), 'part')}: {', '.join(selected[:6])}{'…' if len(selected) > 6 else ''}")
