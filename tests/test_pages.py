"""Every page renders from saved results (never loading the model), with its widgets and charts, and follows the layer."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from emo_core.defaults import EMBEDDED_NAME
from emo_core.parts import circuit_components, parse_tokens
from emo_core.results import load_results
from emo_core.steering import STEERING_HEADS, STEERING_NEURONS
from tests.test_app import assert_clean, no_model, results_dir, start
from ui import steering_report
from ui.data import results_root
from ui.pages import PAGES as REGISTERED
from ui.part_view import default_part

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


SAVED_RESULT_PAGES = [page.script for page in REGISTERED if not page.run]
LIVE_PAGES = [page.script for page in REGISTERED if page.run]


@pytest.mark.parametrize("page", SAVED_RESULT_PAGES)
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


def test_the_part_page_shows_a_parts_effects_and_refuses_parts_the_model_lacks() -> None:
    results = load_results(EMBEDDED_NAME, results_root())

    def open_part(query: dict[str, str]) -> AppTest:
        app = start(query)
        app.switch_page("pages/views/part.py").run()
        assert not app.exception and all("could not be loaded" in e.value for e in app.error)  # the model is off in these tests
        return app

    app = open_part({"emotion": "fear", "part": "L3H1"})
    assert app.title[0].value == "L3H1: head 1 of layer 3" and app.query_params["part"] == "L3H1"
    profile = app.dataframe[0].value
    assert list(profile["emotion"]) == list(results.emotions)
    own = results.causal_effects("steered", "head", "mean")[:, 3, 1]
    assert np.allclose(profile["drop"], own.numpy())  # the table is the stored effect of this very head, every emotion
    neuron = open_part({"emotion": "fear", "part": "L2N7"})
    assert neuron.title[0].value == "L2N7: neuron 7 of layer 2"
    for link in ("L99H1", "L3H99"):  # parts the model lacks: the page says so and shows the default
        app = open_part({"emotion": "fear", "part": link})
        assert any("does not exist" in w.value for w in app.warning), [w.value for w in app.warning]
        assert app.title[0].value.startswith(default_part(results, "fear").token)
        assert app.query_params["part"] == default_part(results, "fear").token
    app = start({"emotion": "fear", "part": "head"})  # not a part at all: the link's first page says so
    assert any("is not a head or neuron" in w.value for w in app.warning)
    app = open_part({"emotion": "fear", "part": "L3H1"})
    app.text_input(key="part_typed").input("L5N12").run()  # typing a part opens it
    assert app.title[0].value == "L5N12: neuron 12 of layer 5" and app.query_params["part"] == "L5N12"
    app.text_input(key="part_typed").input("L5N99999").run()  # one the model lacks: a message, the page stays
    assert not app.exception and any("does not exist" in w.value for w in app.warning)


def test_circuit_page_tables_charts_and_selection() -> None:
    app = open_page("pages/views/circuit.py", {"emotion": "sadness"})
    assert app.title[0].value == "The sadness circuit"
    assert 0 < len(app.dataframe[0].value) <= 20 and "head" in app.dataframe[0].value.columns
    results = load_results(EMBEDDED_NAME, results_root())
    assert len(app.dataframe) == 2 and list(app.dataframe[1].value.columns)[:5] == ["part", "rank", "layer", "head", "own drop"]
    for table in app.dataframe:  # every ranked row links its own part's page, with the view
        rows = table.value
        assert all(
            link.startswith("part?") and f"part=L{layer}H{head}" in link and "emotion=sadness" in link
            for link, layer, head in zip(rows["part"], rows["layer"], rows["head"], strict=True)
        )
    steering = f"top {STEERING_HEADS} heads and {STEERING_NEURONS} neurons of the *matters when switched off* ranking"
    assert any(steering in block.value for block in app.caption)  # circuit steering pushes those, not the paper's circuit
    app.radio(key="circuit_rank_kind").set_value("neuron").run()
    assert len(app.dataframe[0].value) == 20 and "neuron" in app.dataframe[0].value.columns
    figure = steering_report.sentence(results.report or {}, "circuit", "sadness")  # circuit steering's evaluated figure
    assert any(block.value == figure for block in app.markdown)
    curves = ((results.report or {}).get("ablation") or {}).get("curves")
    assert len(app.get("vega_lite_chart")) == 4 + (curves is not None)
    if curves is None:  # a cache not yet evaluated says how to get the knockout curves
        assert any("python -m emo_core evaluate" in block.value for block in app.info)
    else:
        for baseline in curves["reading"]:
            app.radio(key="circuit_curve_baseline").set_value(baseline).run()
            assert_clean(app)
            assert any("random" in block.value for block in app.markdown)
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


@pytest.mark.parametrize("page", LIVE_PAGES)
def test_live_pages_draw_their_controls_and_say_when_the_model_cannot_load(page: str) -> None:
    app = start({"scenario": "work_eval_01:negative", "baseline": "asked", "method": "circuit", "decode": "sample", "seed": "7"})
    app.switch_page(page).run()
    assert not app.exception
    assert any("could not be loaded" in e.value for e in app.error)
    assert app.selectbox(key="run_scenario").value == "work_eval_01:negative"
    assert app.query_params["seed"] == "7" and app.query_params["decode"] == "sample" and app.query_params["method"] == "circuit"
    assert app.session_state["run_sample"] is True and app.session_state["run_seed"] == 7


def test_bad_run_links_give_messages_and_defaults() -> None:
    query = {"scenario": "nope", "baseline": "loud", "method": "magic", "strength": "-3", "tokens": "9999", "seed": "x", "mode": "half"}
    app = start(query)
    warnings = " ".join(w.value for w in app.warning)  # shown once, on the first page the link opens
    for part in ("'nope'", "'loud'", "'magic'", "'-3'", "'9999'", "'x'", "'half'"):
        assert part in warnings
    app.switch_page(LIVE_PAGES[0]).run()
    assert not app.exception
    assert app.session_state["knockout_baseline"] == "steered" and app.session_state["run_tokens"] == 48
    assert app.query_params["baseline"] == "steered" and app.query_params["scenario"] != "nope"


def test_a_typed_scenario_travels_in_the_link_and_an_oversized_one_is_refused() -> None:
    app = start({"text": "I waited for the bus\nIt never came."})
    app.switch_page(LIVE_PAGES[0]).run()
    assert app.text_area(key="run_text").value == "I waited for the bus\nIt never came."
    assert app.query_params["text"] == "I waited for the bus\nIt never came." and "scenario" not in app.query_params
    app = start({"text": "x" * 1001})
    assert any("1,001 characters" in w.value for w in app.warning) and app.session_state["run_scenario"]


def test_knockout_presets_select_the_circuit_the_top_parts_and_a_matched_random_set() -> None:
    app = start({"emotion": "fear"})
    app.switch_page(LIVE_PAGES[0]).run()
    app.button(key="knockout_preset_circuit").click().run()
    circuit = [c.token for c in circuit_components(load_results(EMBEDDED_NAME, results_root()).circuit("fear"))]
    assert app.session_state["selection"] == circuit and app.query_params["sel"] == ",".join(circuit)
    app.button(key="knockout_preset_random").click().run()
    drawn = parse_tokens(app.session_state["selection"])[0]
    layers = lambda parts: sorted((c.kind, c.layer) for c in parts)  # noqa: E731
    assert layers(drawn) == layers(parse_tokens(circuit)[0]) and not set(app.session_state["selection"]) & set(circuit)
    app.number_input(key="knockout_k").set_value(3).run()
    app.button(key="knockout_preset_heads").click().run()
    assert len(app.session_state["selection"]) == 3 and all("H" in token for token in app.session_state["selection"])
    app.button(key="knockout_preset_clear").click().run()
    assert app.session_state["selection"] == [] and "sel" not in app.query_params
    app.number_input(key="knockout_neuron_rank").set_value(2).run()
    app.button(key="knockout_add_ranked").click().run()
    assert len(app.session_state["selection"]) == 1 and "N" in app.session_state["selection"][0]
