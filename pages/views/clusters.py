"""Clusters: where each prompt's hidden state sits at the chosen layer, and how the emotions relate there."""

from __future__ import annotations

import time

import streamlit as st

from emo_core.scenarios import THEMES, VALENCES
from ui import charts, frames, glossary, narrative, tour
from ui.data import page_results
from ui.export import chart_downloads, table_download
from ui.state import LAYER, current, request

METHODS = {"UMAP": "umap", "PCA": "pca"}
MAP_PANEL, HEATMAP_PANEL = "clusters_map_panel", "clusters_heatmap_panel"
HEATMAP_WIDTH = 340  # px: room for six ~45 px cells and their labels
# The map and the heatmap sit side by side while the map keeps 420 px (its legends' width); on a narrower page
# (a 1024 px projector) the heatmap moves under the map instead of shrinking.
PANEL_STYLE = f"<style>[data-testid=stLayoutWrapper]:has(> .st-key-{MAP_PANEL}) {{min-width: min(100%, 420px);}}</style>"

results = page_results()
view = current()
tour.banner(results, view.emotion, tour.CLUSTERS)

st.title("Emotion clusters")
st.caption(
    f"{glossary.HIDDEN_STATE} Each dot is one prompt, placed by its hidden state at the last word of the prompt, read along the "
    "six emotion directions (how strongly the notes point toward each emotion) and flattened to two dimensions. "
    f"{glossary.LAYER}"
)

method_col, valence_col, theme_col = st.columns([1, 2, 2])
method_name = method_col.radio("Map", list(METHODS), horizontal=True, key="clusters_method", help=glossary.UMAP_PCA)
method = METHODS[method_name]
valences = valence_col.multiselect(
    "Outcomes", VALENCES, default=list(VALENCES), key="clusters_valences", help="Good, neutral or bad outcome."
)
themes = theme_col.multiselect("Themes", THEMES, default=[], key="clusters_themes", placeholder="All themes")

points = frames.map_frame(results, view.layer, method, valences, themes)
extent = frames.map_extent(results, method)
st.html(PANEL_STYLE)
panels = st.container(horizontal=True, gap="medium")
left, right = panels.container(key=MAP_PANEL), panels.container(width=HEATMAP_WIDTH, key=HEATMAP_PANEL)
with left:
    played = st.button(
        "Play through the layers", icon=":material/play_arrow:", key="clusters_play", help="Watch the clusters form as depth grows."
    )

    def map_title(layer: int) -> str:
        return f"{method_name} map of the hidden state at layer {layer}"

    map_spec = charts.spec_for(charts.cluster_map, extent)
    title_slot, map_slot = st.empty(), st.empty()
    title_slot.markdown(f"**{map_title(view.layer)}**")
    map_slot.vega_lite_chart(points.drop(columns="key"), map_spec, width="stretch")
    st.caption(
        "Scroll to zoom, drag to pan, double-click to reset. Hover a dot to read its prompt. The map keeps its axes from layer to layer."
    )
    titled_map = lambda: charts.cluster_map(points, extent).properties(title=map_title(view.layer))  # noqa: E731
    chart_downloads(titled_map, "clusters", method, f"layer{view.layer}")
    if played:
        for layer in range(results.n_layers):
            title_slot.markdown(f"**{map_title(layer)}**")
            frame = frames.map_frame(results, layer, method, valences, themes)
            map_slot.vega_lite_chart(frame.drop(columns="key"), map_spec, width="stretch")
            time.sleep(0.25)
        request({LAYER: results.n_layers - 1})
        st.rerun()

with right:
    cosines = results.cosine_matrix(view.layer)
    st.markdown(narrative.closeness_sentence(cosines, view.layer, view.emotion))
    heatmap_title = f"How alike the emotion directions are at layer {view.layer}"
    st.markdown(f"**{heatmap_title}**")
    cosine_long = frames.cosine_frame(cosines)
    st.vega_lite_chart(cosine_long, charts.spec_for(charts.cosine_heatmap), width="stretch")
    st.caption(f"{glossary.DIRECTION} 1 = the same direction, 0 = unrelated, −1 = opposite.")
    chart_downloads(lambda: charts.cosine_heatmap(cosine_long).properties(title=heatmap_title), "emotion_similarity", f"layer{view.layer}")

st.subheader("Where in the model do the emotions separate?")
st.markdown(narrative.separation_sentence(results, view.layer))
separation = frames.separation_frame(results, view.layer)
separation_title = "Emotion separation by layer (dashed line: the current layer)"
st.vega_lite_chart(separation, charts.spec_for(charts.separation_chart, results.n_layers, separation_title), width="stretch")
st.caption(
    "Cluster separation (silhouette) is high when prompts sit closer to others asking for the same emotion than to the rest. "
    "Classifier accuracy is how often a simple linear classifier names the requested emotion from the layer's hidden state."
)
chart_downloads(lambda: charts.separation_chart(separation, results.n_layers, separation_title), "separation_by_layer")

numbers = st.expander("The numbers behind these charts", key="clusters_numbers", on_change="rerun")
if numbers.open:  # drawn only while open, so a layer switch does not redraw hidden tables
    with numbers:
        st.markdown(f"**Emotion similarity at layer {view.layer}**")
        st.dataframe(cosines.round(3), width="stretch")
        table_download(cosines.rename_axis("emotion").reset_index(), "emotion_similarity", f"layer{view.layer}")
        st.markdown("**Separation by layer**")
        by_layer = frames.separation_table(results)
        st.dataframe(by_layer, hide_index=True, width="stretch")
        table_download(by_layer, "separation_by_layer")
        st.markdown(f"**Map points at layer {view.layer}** ({len(points):,} prompts)")
        table_download(points, "clusters", method, f"layer{view.layer}")
