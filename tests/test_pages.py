"""Every page renders from saved results (never loading the model), with its widgets and charts, and follows the layer."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import PAGES, assert_clean, no_model, results_dir, start

__all__ = ["no_model", "results_dir"]  # autouse fixtures shared with test_app


def chart_data(app: AppTest) -> list[bytes]:
    """The data of every chart on the page (Altair charts carry named datasets; cached specs carry plain data)."""
    charts = app.get("vega_lite_chart")
    return [chart.proto.data.data for chart in charts] + [dataset.data.data for chart in charts for dataset in chart.proto.datasets]


def open_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    app = start(query)
    app.switch_page(page).run()
    assert_clean(app)
    return app


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_from_the_cache(page: str) -> None:
    app = open_page(page)
    assert app.title and app.caption
    assert app.slider(key="layer") if page.endswith("home.py") else app.get("vega_lite_chart")


def test_clusters_page_widgets_and_layer_following() -> None:
    app = open_page("pages/views/clusters.py", {"layer": "1"})
    assert app.radio(key="clusters_method").options == ["UMAP", "PCA"]
    assert app.multiselect(key="clusters_valences") and app.multiselect(key="clusters_themes")
    assert len(app.get("vega_lite_chart")) == 3
    before = chart_data(app)
    assert any(block.value.startswith("At layer 1,") for block in app.markdown)
    app.session_state["layer"] = 2
    app.run()
    assert_clean(app)
    assert chart_data(app) != before and any(block.value.startswith("At layer 2,") for block in app.markdown)
    assert app.query_params["layer"] == "2"
    assert not app.dataframe  # the numbers are drawn only once their expander is opened
    app.session_state["clusters_numbers"] = True
    app.run()
    assert len(app.dataframe) == 2 and any(block.value.startswith("**Emotion similarity at layer 2") for block in app.markdown)
    app.radio(key="clusters_method").set_value("PCA").run()
    assert_clean(app)
    app.multiselect(key="clusters_valences").set_value(["negative"]).run()
    assert_clean(app)


def test_circuit_page_tables_charts_and_selection() -> None:
    app = open_page("pages/views/circuit.py", {"emotion": "sadness"})
    assert app.title[0].value == "The sadness circuit"
    assert len(app.dataframe) == 2 and 0 < len(app.dataframe[0].value) <= 20 and len(app.dataframe[1].value) == 20
    assert len(app.get("vega_lite_chart")) == 4
    app.button(key="circuit_select").click().run()
    assert_clean(app)
    selected = app.session_state["selection"]
    assert selected and app.query_params["sel"] == ",".join(selected)
    app.button(key="circuit_clear").click().run()
    assert app.session_state["selection"] == [] and "sel" not in app.query_params
    app.selectbox(key="circuit_add_kind").set_value("neuron")
    app.number_input(key="circuit_add_layer").set_value(1)
    app.number_input(key="circuit_add_index").set_value(5)
    app.button(key="circuit_add").click().run()
    assert app.session_state["selection"] == ["L1N5"]
    app.switch_page("pages/views/clusters.py").run()
    assert app.session_state["selection"] == ["L1N5"] and app.query_params["sel"] == "L1N5"


def test_circuit_page_refuses_a_head_the_model_lacks() -> None:
    app = open_page("pages/views/circuit.py")
    app.selectbox(key="circuit_add_kind").set_value("head")
    app.number_input(key="circuit_add_index").set_value(99)
    app.button(key="circuit_add").click().run()
    assert_clean(app)
    assert any("does not exist" in w.value for w in app.warning) and app.session_state["selection"] == []
