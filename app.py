"""Emotion Circuit Explorer: the Streamlit entry point.

Routes explicitly over the pages of ``ui.pages``, restores a shared link's settings, draws the one
sidebar every page shares, and keeps the address bar a link to the current view. Once the first page
is drawn, the built-in model starts loading in the background.
"""

from __future__ import annotations

import streamlit as st

from ui import pages, sidebar, state, tour
from ui.data import model_choices, preload_default_model

st.set_page_config(page_title="Emotion Circuit Explorer", page_icon="🧠", layout="wide")
models = model_choices()
state.seed_from_link(models)
state.apply_requested()
page = st.navigation(
    [st.Page(spec.script, title=spec.title, icon=spec.icon, url_path=spec.url_path or None, default=spec.is_home) for spec in pages.PAGES]
)
tour.follow()
sidebar.draw(models, pages.by_title(page.title))
state.write_link()
state.show_problems()
page.run()
preload_default_model()
