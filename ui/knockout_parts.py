"""Choosing the parts to switch off on the Knockout page: presets, the clickable head grid, neurons by number or rank.

Every change goes through a button or chart callback, so the selection (and the link) is up to date before the
page draws; the head grid's key changes after each click, and each click toggles exactly one cell once.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from emo_core.parts import MAX_PARTS, Component, circuit_components, matched_random, out_of_range, parse_tokens
from emo_core.results import Results
from emo_core.store import CacheError
from ui.run import BASELINE, KNOCKOUT_METHOD, KNOCKOUT_STRENGTH, MODE
from ui.state import SELECTION

if TYPE_CHECKING:
    import torch

GRID_CLICKS, GRID_HANDLED, RANDOM_DRAWS = "knockout_grid_clicks", "knockout_grid_handled", "knockout_random_draws"
PROBLEM = "knockout_parts_problem"
K, NEURON_LAYER, NEURON_INDEX, NEURON_RANK = "knockout_k", "knockout_neuron_layer", "knockout_neuron_index", "knockout_neuron_rank"


def selected() -> list[Component]:
    """The session's selection as components."""
    return parse_tokens(st.session_state.get(SELECTION, []))[0]


def _set(components: list[Component]) -> None:
    if len(components) > MAX_PARTS:
        st.session_state[PROBLEM] = f"At most {MAX_PARTS} parts can be switched off at once; kept the first {MAX_PARTS}."
        components = components[:MAX_PARTS]
    st.session_state[SELECTION] = [c.token for c in dict.fromkeys(components)]


def _toggle(component: Component) -> None:
    current = selected()
    _set([c for c in current if c != component] if component in current else [*current, component])


def head_colours(results: Results, emotion: str) -> tuple[torch.Tensor, str]:
    """What the head grid is coloured by, and its name: the estimated knockout effect when the cache has it, else the paper's score."""
    try:
        return results.causal_effects("steered", "head", "mean")[results.emotion_index(emotion)], "knockout effect"
    except CacheError:
        return results.head_scores(emotion), "importance"


def prepared_settings(results: Results, emotion: str) -> dict[str, object]:
    """The session settings of ``emotion``'s prepared knockout: its parts, ablation, and baseline (raises ``CacheError``
    for a cache without prepared knockouts)."""
    prepared = results.prepared(emotion)
    return {
        SELECTION: [c.token for c in prepared.parts],
        MODE: prepared.mode,
        BASELINE: prepared.baseline.kind,
        KNOCKOUT_METHOD: prepared.baseline.method,
        KNOCKOUT_STRENGTH: prepared.baseline.strength,
    }


def _apply_prepared(results: Results, emotion: str) -> None:
    try:
        st.session_state.update(prepared_settings(results, emotion))
    except CacheError as error:
        st.session_state[PROBLEM] = str(error)


def presets(results: Results, emotion: str, excluded: frozenset[Component] = frozenset()) -> None:
    """Buttons: the emotion's prepared knockout (with its baseline), its circuit, its top-k heads or neurons (outside
    ``excluded``, the parts the baseline's steering pushes), a matched random set, or nothing."""
    shape = results.shape
    circuit = circuit_components(results.circuit(emotion))
    k = int(st.session_state.get(K, 4))
    heads, neurons = results.ranked_parts(emotion, "head", k, excluded), results.ranked_parts(emotion, "neuron", k, excluded)
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.button(
        f"Prepared for {emotion}",
        type="primary",
        on_click=_apply_prepared,
        args=(results, emotion),
        key="knockout_preset_prepared",
        help="The knockout and baseline the build chose on training scenarios: the ones that remove the emotion from the words "
        "most often against random parts. Sets the parts, how they are switched off, and the baseline.",
    )
    row.button(f"The {emotion} circuit ({len(circuit)})", on_click=_set, args=(circuit,), key="knockout_preset_circuit")
    row.number_input("k", 1, 64, 4, key=K, width=90)
    row.button(f"Top {k} heads", on_click=_set, args=(heads,), key="knockout_preset_heads")
    row.button(f"Top {k} neurons", on_click=_set, args=(neurons,), key="knockout_preset_neurons")
    row.button(
        "Random parts, same layers",
        on_click=_draw_random,
        args=(circuit, shape),
        key="knockout_preset_random",
        help="As many random heads and neurons as the current selection (or the circuit) has in each of its layers: the fair control.",
    )
    row.button("Clear", on_click=_set, args=([],), key="knockout_preset_clear")


def _draw_random(circuit: list[Component], shape: dict[str, int]) -> None:
    draws = st.session_state.get(RANDOM_DRAWS, 0) + 1
    st.session_state[RANDOM_DRAWS] = draws
    _set(matched_random(selected() or circuit, shape, random.Random(draws)))


def grid_clicked(key: str) -> None:
    """Toggle the clicked head, once per click: the same click arriving again for a grid it already replaced is ignored.

    On a loaded server a browser can send a replaced grid's click again with a later rerun; toggling it again
    silently switched that head back on (a test pressed Generate and ran without the head it had just clicked).
    """
    cells = tuple((int(cell["layer"]), int(cell["head"])) for cell in st.session_state[key]["selection"].get("cell", []))
    handled = st.session_state.setdefault(GRID_HANDLED, {})
    if handled.get(key) == cells:
        return
    handled[key] = cells
    for layer, head in cells:
        _toggle(Component("head", layer, head))
    st.session_state[GRID_CLICKS] = st.session_state.get(GRID_CLICKS, 0) + 1


def grid_frame(scores: torch.Tensor, chosen: list[Component]) -> pd.DataFrame:
    """One row per head: ``layer``, ``head``, ``score``, ``token``, ``selected``, ``state``."""
    n_layers, n_heads = scores.shape
    picked = {(c.layer, c.index) for c in chosen if c.kind == "head"}
    rows = [
        {
            "layer": layer,
            "head": head,
            "score": float(scores[layer, head]),
            "token": f"L{layer}H{head}",
            "selected": (layer, head) in picked,
            "state": "switched off" if (layer, head) in picked else "on",
        }
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    return pd.DataFrame(rows)


def grid_key() -> str:
    """The head grid's widget key; it changes after every click, so the chart starts each time with nothing clicked."""
    return f"knockout_grid_{st.session_state.get(GRID_CLICKS, 0)}"


def neuron_adders(results: Results, emotion: str) -> None:
    """Add a neuron by layer and number, or the neuron of a given rank."""
    shape = results.shape
    by_number, by_rank = st.columns(2, vertical_alignment="bottom")
    with by_number:
        layer_col, index_col, add_col = st.columns([1, 1, 1.2], vertical_alignment="bottom")
        layer_col.number_input("Layer", 0, shape["n_layers"] - 1, key=NEURON_LAYER)
        index_col.number_input("Neuron", 0, shape["d_mlp"] - 1, key=NEURON_INDEX)
        add_col.button("Add", on_click=_add_numbered, args=(shape,), key="knockout_add_neuron")
    with by_rank:
        rank_col, add_col = st.columns([2, 1], vertical_alignment="bottom")
        rank_col.number_input("Or the neuron ranked", 1, 1000, key=NEURON_RANK, help="1 = the neuron that matters most for the emotion.")
        add_col.button("Add it", on_click=_add_ranked, args=(results, emotion), key="knockout_add_ranked")
    if st.session_state.get(PROBLEM):
        st.warning(st.session_state.pop(PROBLEM))


def _add_numbered(shape: dict[str, int]) -> None:
    component = Component("neuron", int(st.session_state[NEURON_LAYER]), int(st.session_state[NEURON_INDEX]))
    problem = out_of_range(component, shape["n_layers"], shape["n_heads"], shape["d_mlp"])
    if problem:
        st.session_state[PROBLEM] = problem
    elif component not in selected():
        _set([*selected(), component])


def _add_ranked(results: Results, emotion: str) -> None:
    rank = int(st.session_state[NEURON_RANK])
    found = results.ranked_parts(emotion, "neuron", rank)
    if len(found) < rank:
        st.session_state[PROBLEM] = f"Only {len(found)} neurons are ranked for {emotion}."
        return
    component = found[-1]
    if component not in selected():
        _set([*selected(), component])
