"""Emotion Circuit Explorer: the Streamlit entry point.

Routes explicitly over the files in ``pages/``, restores a shared link's settings, draws the one
sidebar every page shares, and keeps the address bar a link to the current view.
"""

from __future__ import annotations

import streamlit as st

from ui import sidebar, state, tour
from ui.data import model_choices

st.set_page_config(page_title="Emotion Circuit Explorer", page_icon="🧠", layout="wide")
models = model_choices()
state.seed_from_link(models)
state.apply_requested()
page = st.navigation(
    [
        st.Page(tour.HOME, title="Home", icon=":material/home:", default=True),
        st.Page(tour.CLUSTERS, title="Clusters", icon=":material/scatter_plot:", url_path="clusters"),
        st.Page(tour.CIRCUIT, title="Circuit", icon=":material/hub:", url_path="circuit"),
    ]
)
tour.follow()
sidebar.draw(models, page.title)
state.write_link()
state.show_problems()
page.run()
