"""Emotion Circuit Explorer: the Streamlit entry point (landing page for now; pages come next)."""

from __future__ import annotations

import streamlit as st

import emo_core as ec


@st.cache_resource(show_spinner="Loading the model…", max_entries=1)
def load_bundle(source: str) -> ec.ModelBundle:
    """One model per process, shared by every session (interventions never leak between them)."""
    return ec.load_model(source)


st.set_page_config(page_title="Emotion Circuit Explorer", layout="wide")
st.title("Emotion Circuit Explorer")
st.write(
    "Look inside a chat language model and see how it produces emotions: which internal parts light up "
    "for anger or joy, and what happens to its reply when you switch them off."
)
try:
    bundle = load_bundle(ec.DEFAULT_MODEL)
except ec.EmoCoreError as error:
    st.error(str(error))
    st.stop()

shape = bundle.shape
st.subheader(f"Model: {bundle.name}")
columns = st.columns(5)
for column, (label, value) in zip(
    columns,
    [
        ("Layers", shape.n_layers),
        ("Attention heads per layer", shape.n_heads),
        ("Head size", shape.head_dim),
        ("MLP neurons per layer", shape.d_mlp),
        ("Hidden size", shape.d_model),
    ],
    strict=True,
):
    column.metric(label, value)
