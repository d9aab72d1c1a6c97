"""Choosing parts on the Knockout page (``ui/knockout_parts.py``): the callbacks behind its buttons, grid and number
boxes, called as Streamlit calls them, on a session held in bare mode (no page run), over a synthetic cache."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from emo_core.parts import MAX_PARTS, Component, circuit_components, matched_random
from emo_core.results import Results, load_results
from emo_core.store import CacheError
from tests.synthetic_cache import SHAPE, synthetic_results
from ui import knockout_parts as kp
from ui.run import BASELINE, KNOCKOUT_METHOD, KNOCKOUT_STRENGTH, MODE
from ui.state import SELECTION

H, N = "head", "neuron"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic cache for the module: the callbacks read it as ``Results``, the AppTest pages load it themselves."""
    root = tmp_path_factory.mktemp("cache")
    synthetic_results(root)
    return root


@pytest.fixture(scope="module")
def results(cache_root: Path) -> Results:
    return load_results("synthetic-model", cache_root)


@pytest.fixture(autouse=True)
def session() -> Iterator[None]:
    st.session_state.clear()
    yield
    st.session_state.clear()


def tokens() -> list[str]:
    return list(st.session_state[SELECTION])


def test_the_selection_is_read_as_parts_and_set_without_repeats() -> None:
    assert kp.selected() == []
    st.session_state[SELECTION] = ["L1H2", "bad", "L3N4"]
    assert kp.selected() == [Component(H, 1, 2), Component(N, 3, 4)]
    kp._set([Component(N, 3, 4), Component(H, 0, 0), Component(N, 3, 4)])
    assert tokens() == ["L3N4", "L0H0"] and kp.PROBLEM not in st.session_state


def test_more_parts_than_the_limit_keep_the_first_and_say_so() -> None:
    parts = [Component(N, 0, i) for i in range(MAX_PARTS + 3)]
    kp._set(parts)
    assert tokens() == [c.token for c in parts[:MAX_PARTS]]
    assert st.session_state[kp.PROBLEM] == f"At most {MAX_PARTS} parts can be switched off at once; kept the first {MAX_PARTS}."
    st.session_state.pop(kp.PROBLEM)
    kp._set(parts[:MAX_PARTS])
    assert kp.PROBLEM not in st.session_state  # exactly the limit is allowed


def test_a_toggle_adds_a_part_at_the_end_or_takes_it_out() -> None:
    kp._set([Component(H, 1, 1), Component(H, 2, 2)])
    kp._toggle(Component(H, 0, 3))
    assert tokens() == ["L1H1", "L2H2", "L0H3"]
    kp._toggle(Component(H, 1, 1))
    assert tokens() == ["L2H2", "L0H3"]


def test_the_head_grid_is_coloured_by_the_knockout_effect_or_else_the_importance(results: Results) -> None:
    scores, name = kp.head_colours(results, "fear")
    assert name == "knockout effect"
    assert torch.equal(scores, results.causal_effects("steered", "head", "mean")[results.emotion_index("fear")])

    class Older:
        """A cache from before the causal effects."""

        def causal_effects(self, *args: object) -> torch.Tensor:
            raise CacheError("no effects")

        def emotion_index(self, emotion: str) -> int:
            return results.emotion_index(emotion)

        def head_scores(self, emotion: str) -> torch.Tensor:
            return results.head_scores(emotion)

    scores, name = kp.head_colours(Older(), "fear")
    assert name == "importance" and torch.equal(scores, results.head_scores("fear"))


def test_the_prepared_preset_sets_parts_ablation_and_baseline(results: Results) -> None:
    prepared = results.prepared("anger")
    kp._apply_prepared(results, "anger")
    assert tokens() == [c.token for c in prepared.parts] == ["L1H0", "L2N3", "L2N5"]
    assert st.session_state[MODE] == prepared.mode == "mean"
    assert (st.session_state[BASELINE], st.session_state[KNOCKOUT_METHOD]) == (prepared.baseline.kind, prepared.baseline.method)
    assert st.session_state[KNOCKOUT_STRENGTH] == prepared.baseline.strength
    assert kp.prepared_settings(results, "anger") == {
        SELECTION: tokens(),
        MODE: "mean",
        BASELINE: prepared.baseline.kind,
        KNOCKOUT_METHOD: prepared.baseline.method,
        KNOCKOUT_STRENGTH: prepared.baseline.strength,
    }


def test_a_cache_without_prepared_knockouts_leaves_the_selection_and_says_why(results: Results) -> None:
    class Unprepared:
        def prepared(self, emotion: str) -> None:
            raise CacheError("These results have no prepared knockouts; rebuild them.")

    kp._set([Component(H, 1, 1)])
    kp._apply_prepared(Unprepared(), "anger")
    assert tokens() == ["L1H1"] and st.session_state[kp.PROBLEM] == "These results have no prepared knockouts; rebuild them."


def test_each_random_draw_is_a_new_matched_set_for_the_selection_or_else_the_circuit(results: Results) -> None:
    circuit = circuit_components(results.circuit("anger"))
    kp._draw_random(circuit, SHAPE)
    first = tokens()
    assert st.session_state[kp.RANDOM_DRAWS] == 1
    assert first == [c.token for c in matched_random(circuit, SHAPE, random.Random(1))]
    chosen = [Component(N, 3, 0), Component(N, 3, 1), Component(H, 0, 2)]
    kp._set(chosen)
    kp._draw_random(circuit, SHAPE)
    assert st.session_state[kp.RANDOM_DRAWS] == 2
    assert tokens() == [c.token for c in matched_random(chosen, SHAPE, random.Random(2))]


def test_the_grid_has_a_row_per_head_with_the_chosen_ones_switched_off() -> None:
    scores = torch.arange(6.0).reshape(2, 3)
    frame = kp.grid_frame(scores, [Component(H, 1, 2), Component(N, 0, 0), Component(H, 0, 0)])
    assert list(frame.columns) == ["layer", "head", "score", "token", "selected", "state"]
    expected = pd.DataFrame(
        {
            "layer": [0, 0, 0, 1, 1, 1],
            "head": [0, 1, 2, 0, 1, 2],
            "score": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "token": ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2"],
            "selected": [True, False, False, False, False, True],
            "state": ["switched off", "on", "on", "on", "on", "switched off"],
        }
    )
    pd.testing.assert_frame_equal(frame, expected)


def test_each_grid_click_toggles_its_head_and_moves_the_grid_to_a_new_key() -> None:
    assert kp.grid_key() == "knockout_grid_0"
    st.session_state["knockout_grid_0"] = {"selection": {"cell": [{"layer": "4", "head": 1.0}]}}
    kp.grid_clicked("knockout_grid_0")
    assert tokens() == ["L4H1"] and kp.grid_key() == "knockout_grid_1"
    kp.grid_clicked("knockout_grid_0")  # the same click sent again
    assert tokens() == ["L4H1"] and kp.grid_key() == "knockout_grid_1"
    st.session_state["knockout_grid_1"] = {"selection": {"cell": [{"layer": 4, "head": 1}]}}
    kp.grid_clicked("knockout_grid_1")  # the head clicked again on the new grid: off again
    assert tokens() == [] and kp.grid_key() == "knockout_grid_2"
    st.session_state["knockout_grid_2"] = {"selection": {}}
    kp.grid_clicked("knockout_grid_2")  # a click that selected nothing changes nothing but the key
    assert tokens() == [] and kp.grid_key() == "knockout_grid_3"


def test_a_numbered_neuron_is_added_once_or_refused_with_the_range(results: Results) -> None:
    st.session_state.update({kp.NEURON_LAYER: 2, kp.NEURON_INDEX: 5})
    kp._add_numbered(SHAPE)
    kp._add_numbered(SHAPE)
    assert tokens() == ["L2N5"] and kp.PROBLEM not in st.session_state
    st.session_state.update({kp.NEURON_LAYER: 2, kp.NEURON_INDEX: SHAPE["d_mlp"]})
    kp._add_numbered(SHAPE)
    assert tokens() == ["L2N5"]
    assert (
        st.session_state[kp.PROBLEM]
        == f"L2N{SHAPE['d_mlp']}: neuron {SHAPE['d_mlp']} does not exist (0 to {SHAPE['d_mlp'] - 1} per layer)."
    )


def test_the_neuron_of_a_rank_is_added_once_or_refused_past_the_last_rank(results: Results) -> None:
    ranked = results.ranked_parts("fear", "neuron", 3)
    st.session_state[kp.NEURON_RANK] = 3
    kp._set([Component(H, 0, 0)])
    kp._add_ranked(results, "fear")
    kp._add_ranked(results, "fear")
    assert tokens() == ["L0H0", ranked[2].token]
    everything = len(results.ranked_parts("fear", "neuron", 10_000))
    st.session_state[kp.NEURON_RANK] = everything + 1
    kp._add_ranked(results, "fear")
    assert st.session_state[kp.PROBLEM] == f"Only {everything} neurons are ranked for fear." and len(tokens()) == 2


def _choosing_page(root: str) -> None:
    """The Knockout page's part pickers alone, over the synthetic cache in ``root``."""
    from pathlib import Path

    import streamlit as st

    from emo_core.results import load_results
    from ui import knockout_parts
    from ui.state import SELECTION

    results = load_results("synthetic-model", Path(root))
    st.session_state.setdefault(SELECTION, [])
    knockout_parts.presets(results, "fear", frozenset(results.ranked_parts("fear", "head", 1) + results.ranked_parts("fear", "neuron", 1)))
    knockout_parts.neuron_adders(results, "fear")
    st.markdown("selected: " + " ".join(st.session_state[SELECTION]))


def _shown(app: AppTest) -> list[str]:
    return app.markdown[-1].value.removeprefix("selected:").split()


def test_the_preset_buttons_and_neuron_boxes_set_the_selection_as_their_labels_say(results: Results, cache_root: Path) -> None:
    app = AppTest.from_function(_choosing_page, args=(str(cache_root),), default_timeout=30).run()
    assert not app.exception
    labels = [button.label for button in app.button]
    circuit = circuit_components(results.circuit("fear"))
    assert labels == [
        "Prepared for fear",
        f"The fear circuit ({len(circuit)})",
        "Top 4 heads",
        "Top 4 neurons",
        "Random parts, same layers",
        "Clear",
        "Add",
        "Add it",
    ]
    app.run()
    assert "Top 4 heads" in [button.label for button in app.button]  # k starts at 4, on the first run and after
    app.button(key="knockout_preset_circuit").click().run()
    assert _shown(app) == [c.token for c in circuit]
    app.button(key="knockout_preset_random").click().run()  # matched to the selection: the circuit
    assert _shown(app) == [c.token for c in matched_random(circuit, SHAPE, random.Random(1))]
    app.number_input(key=kp.K).set_value(2).run()
    assert "Top 2 heads" in [button.label for button in app.button]
    pushed = frozenset(results.ranked_parts("fear", "head", 1) + results.ranked_parts("fear", "neuron", 1))  # what the page excludes
    app.button(key="knockout_preset_heads").click().run()
    assert _shown(app) == [c.token for c in results.ranked_parts("fear", "head", 2, pushed)]
    app.button(key="knockout_preset_neurons").click().run()
    assert _shown(app) == [c.token for c in results.ranked_parts("fear", "neuron", 2, pushed)]
    app.button(key="knockout_preset_clear").click().run()
    assert _shown(app) == []
    app.button(key="knockout_preset_prepared").click().run()
    assert _shown(app) == [c.token for c in results.prepared("fear").parts]
    app.button(key="knockout_preset_clear").click().run()

    app.number_input(key=kp.NEURON_LAYER).set_value(3).run()
    app.number_input(key=kp.NEURON_INDEX).set_value(SHAPE["d_mlp"] - 1).run()
    app.button(key="knockout_add_neuron").click().run()
    assert _shown(app) == [f"L3N{SHAPE['d_mlp'] - 1}"]
    app.number_input(key=kp.NEURON_RANK).set_value(2).run()
    app.button(key="knockout_add_ranked").click().run()
    assert _shown(app) == [f"L3N{SHAPE['d_mlp'] - 1}", results.ranked_parts("fear", "neuron", 2)[1].token]
    assert not app.warning and not app.exception
    bounds = {box.label: (box.min, box.max) for box in app.number_input}
    assert bounds == {
        "k": (1, 64),
        "Layer": (0, SHAPE["n_layers"] - 1),
        "Neuron": (0, SHAPE["d_mlp"] - 1),
        "Or the neuron ranked": (1, 1000),
    }


def test_a_refused_neuron_is_a_warning_under_the_boxes(cache_root: Path) -> None:
    app = AppTest.from_function(_choosing_page, args=(str(cache_root),), default_timeout=30).run()
    app.number_input(key=kp.NEURON_RANK).set_value(1000).run()
    app.button(key="knockout_add_ranked").click().run()
    assert [w.value for w in app.warning] == [f"Only {SHAPE['n_layers'] * SHAPE['d_mlp']} neurons are ranked for fear."]
    app.run()
    assert not app.warning  # shown once
