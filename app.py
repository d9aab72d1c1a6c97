"""Emotion Circuit Explorer: the Streamlit entry point.

Routes explicitly over the pages of ``ui.pages``, restores a shared link's settings, draws the one
sidebar every page shares, and keeps the address bar a link to the current view. Once the first page
is drawn, the built-in model starts loading in the background.
"""

from __future__ import annotations

from ui import warm

warm.wait()  # the first page's libraries, when ``ui.serve`` started importing them with the server

import streamlit as st  # noqa: E402

from ui import pages, run, sidebar, state, tour  # noqa: E402
from ui.data import model_choices, preload_default_model, wait_for_library  # noqa: E402

st.set_page_config(page_title="Emotion Circuit Explorer", page_icon=":material/psychology:", layout="wide")
models = model_choices()
if state.seed_from_link(models):
    run.seed_run_from_link(st.query_params.to_dict())
state.apply_requested()
page = st.navigation([st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path or None, default=p.is_home) for p in pages.PAGES])
tour.follow()
spec = pages.by_title(page.title)
sidebar.draw(models, spec)
state.write_link(run.run_query(spec.run) if spec.run else None)
state.show_problems()
if spec.run:
    wait_for_library()
page.run()
preload_default_model()
