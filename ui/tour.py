"""The guided tour: plain-words steps, each opening the right page with the right settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import streamlit as st

from emo_core.parts import circuit_components, describe
from emo_core.results import Results
from emo_core.store import CacheError
from ui.knockout_parts import prepared_settings
from ui.narrative import best_layer
from ui.pages import CIRCUIT, CLUSTERS, GOTO, HOME, KNOCKOUT, PART, PageSpec
from ui.run import BASELINE, MODE
from ui.run import PART as PART_KEY
from ui.state import LAYER, SELECTION, apply

STEP = "tour_step"
TOUR_HEADS, TOUR_NEURONS = 8, 16  # the tour's knockout: the top heads and neurons of the causal ranking


@dataclass(frozen=True)
class Step:
    """One stop of the tour: what to read, which page shows it, and the settings that page needs.

    The settings are made when the step's button is pressed: the knockout preset reads the causal ranking, which
    imports torch, and Home (which lists every step) opens without it.
    """

    title: str
    text: str
    page: PageSpec
    settings: Callable[[], dict[str, object]] = dict


def _knockout_preset(results: Results, emotion: str, more: dict[str, object]) -> dict[str, object]:
    """The tour's knockout: the emotion's prepared knockout with its baseline (``prepared.py``), or, for a cache without
    one, the top heads and neurons of the causal ranking; then the other ``more`` settings."""
    try:
        return {**prepared_settings(results, emotion), **more}
    except CacheError:
        preset = results.ranked_parts(emotion, "head", TOUR_HEADS) + results.ranked_parts(emotion, "neuron", TOUR_NEURONS)
        return {SELECTION: [component.token for component in preset], BASELINE: "steered", MODE: "mean", **more}


def _part_preset(results: Results, emotion: str) -> dict[str, object]:
    """The tour's part: the strongest of its knockout, shown on that knockout's baseline reply."""
    from ui.part_view import default_part

    return _knockout_preset(results, emotion, {PART_KEY: default_part(results, emotion).token})


def _prepared_size(results: Results, emotion: str) -> str:
    try:
        return results.prepared(emotion).size
    except CacheError:
        return f"{TOUR_HEADS} heads and {TOUR_NEURONS} neurons"


def clearest(report: dict | None) -> list[str]:
    """The emotions whose prepared knockout met its target on the evaluation scenarios or, when none did, the one that
    beat chance most clearly (one-sided p under 0.01), if any."""
    prepared = (report or {}).get("prepared") or {}
    met = [emotion for emotion, entry in prepared.items() if entry.get("meets_target")]
    if met or not prepared:
        return met
    best = min(prepared, key=lambda emotion: prepared[emotion].get("p_value", 1.0))
    return [best] if prepared[best].get("p_value", 1.0) < 0.01 else []


def _evaluated(results: Results, emotion: str) -> str:
    """What the evaluation found for the emotion's prepared knockout when it fell short of the target, so the class expects
    what the grid will show."""
    found = ((results.report or {}).get("prepared") or {}).get(emotion)
    if not found or found.get("meets_target"):
        return ""
    shown = " and ".join(clearest(results.report))
    counts = (
        f"removed {emotion} from {found['removed']} of {found['carried']} replies that had it, random parts from {found['random_removed']}"
    )
    if found["p_value"] < 0.01:
        told = f" On the evaluation scenarios this knockout {counts}: more than chance, though some rows will keep {emotion}."
    else:
        told = (
            f" A warning before you press it: on the evaluation scenarios this knockout {counts}, no more than chance, so the "
            "grid may show no effect."
        )
    return told + (f" The effect is clearest for {shown}: pick one in the sidebar to show it." if shown else "")


def steps(results: Results, emotion: str) -> list[Step]:
    """The tour for this model's results and the chosen emotion."""
    prompts = results.table("prompts")
    n_scenarios = prompts["skeleton_id"].nunique()
    best = best_layer(results)
    circuit = circuit_components(results.circuit(emotion))
    size = _prepared_size(results, emotion)
    shape = results.shape
    n_heads, n_neurons = shape["n_layers"] * shape["n_heads"], shape["n_layers"] * shape["d_mlp"]
    return [
        Step(
            "The model reads a scenario",
            f"We give the model {n_scenarios} short everyday scenarios, each with a good, a neutral or a bad outcome, and "
            f"ask it to reply in one of six emotions (*Always reply in {emotion}*): {len(prompts):,} prompts in all. "
            "Try one below and read its reply.",
            HOME,
        ),
        Step(
            "Its hidden state at each layer",
            "While reading, the model keeps a long list of numbers, its inner notes (the hidden state), and rewrites them "
            "at every layer. Each dot is one prompt's notes at the last word, squeezed into 2-D. At layer 0 the emotions "
            "are all mixed up.",
            CLUSTERS,
            partial(dict, {LAYER: 0}),
        ),
        Step(
            "Emotions form clusters",
            f"Deeper in, prompts that ask for the same emotion gather together. At layer {best} they are clearest. "
            "Drag the layer slider to watch them form.",
            CLUSTERS,
            partial(dict, {LAYER: best}),
        ),
        Step(
            "Some parts carry each emotion",
            f"The model has {n_heads:,} attention heads and {n_neurons:,} neurons. The tables and maps score every one of them "
            f"for {emotion}; the {emotion} circuit keeps {len(circuit)} of them ({describe(circuit)}), where {emotion} matters most.",
            CIRCUIT,
        ),
        Step(
            "Pick parts to switch off",
            f"The tour selects {size} near the top of the second table: the ones that matter most for {emotion} when switched "
            "off, in the number the build found removes it best on training scenarios (the sidebar lists them once selected). "
            "The selection is saved in the link, ready for the Knockout page, which switches exactly these parts off while the "
            "model writes.",
            CIRCUIT,
            partial(_knockout_preset, results, emotion, {}),
        ),
        Step(
            "Switch them off and watch",
            f"Here the reply is steered toward {emotion}, and those {size} are switched off. Press *Run on 12 scenarios*: for "
            f"each scenario you see the steered reply, the reply with the parts off, and one with as many random parts off. "
            f"Look at the sentence above the grid: how many replies lost their {emotion} with these parts off, against how many "
            "with random parts off. Random parts rarely remove it; these should, often. Then press *Generate* under *One scenario, "
            f"close up* to read one case slowly.{_evaluated(results, emotion)}",
            KNOCKOUT,
            partial(_knockout_preset, results, emotion, {}),
        ),
        Step(
            "What one part does",
            f"This is the part of that knockout that matters most for {emotion}. The first table says how much switching it "
            "off lowers each emotion, and the word-by-word views below show what it looks at and writes (a head) or what it "
            f"fires on (a neuron) in a reply steered toward {emotion}; at the bottom, watch at which layer the emotion appears.",
            PART,
            partial(_part_preset, results, emotion),
        ),
    ]


def go(tour: list[Step], index: int) -> None:
    """Button callback: make ``index`` the current step, apply its settings and ask for its page."""
    st.session_state[STEP] = index
    st.session_state[GOTO] = tour[index].page.script
    apply(tour[index].settings())


def follow() -> None:
    """Open the page a tour button asked for (called by the entry point once the pages are registered)."""
    page = st.session_state.pop(GOTO, None)
    if page is not None:
        st.switch_page(page)


def step_button(tour: list[Step], index: int, label: str, key: str, primary: bool = True) -> None:
    """A button that opens step ``index`` on its page."""
    st.button(label, key=key, type="primary" if primary else "secondary", on_click=go, args=(tour, index))


def banner(results: Results, emotion: str, page: PageSpec) -> None:
    """While the tour runs and its current step lives on this page, show the step with a Next button."""
    index = st.session_state.get(STEP)
    if index is None:
        return
    tour = steps(results, emotion)
    if tour[index].page != page:
        return
    step = tour[index]
    with st.container(border=True):
        st.markdown(f"**Tour, step {index + 1} of {len(tour)}: {step.title}.** {step.text}")
        left, right, _ = st.columns([2, 1, 3])
        if index + 1 < len(tour):
            with left:
                step_button(tour, index + 1, f"Next: {tour[index + 1].title} →", key="tour_next")
        if right.button("End the tour", key="tour_end"):
            del st.session_state[STEP]
            st.rerun()
