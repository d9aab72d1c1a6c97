"""Circuit: which attention heads and neurons push the model toward the chosen emotion, and picking some for knockout."""

from __future__ import annotations

import streamlit as st

from emo_core.parts import KINDS, Component, circuit_components, count, describe, from_pairs, out_of_range, parse_tokens
from emo_core.steering import STEERING_HEADS, STEERING_NEURONS
from emo_core.store import CacheError
from ui import charts, frames, glossary, narrative, part_view, steering_report, tour
from ui.data import page_results
from ui.export import chart_downloads, table_download
from ui.pages import CIRCUIT
from ui.state import SELECTION, current

PICK, KIND, ADD_LAYER, ADD_INDEX = "circuit_pick", "circuit_add_kind", "circuit_add_layer", "circuit_add_index"
ADD_PROBLEM = "circuit_add_problem"
SCORE_FORMAT = {"score": st.column_config.NumberColumn(format="%.4f"), "part": part_view.LINK_COLUMN}
CAUSAL_FORMAT = {name: st.column_config.NumberColumn(format="%.3f") for name in ("own drop", "others' drop", "harm", "score")}
CAUSAL_FORMAT["part"] = part_view.LINK_COLUMN
KIND_LABELS = {"head": "attention heads", "neuron": "neurons"}
WRITES_PANEL, MATTERS_PANEL = "circuit_writes_panel", "circuit_matters_panel"
HEAT, DOTS = "circuit_head_heat", "circuit_neuron_dots"
# The two ranked tables sit side by side while each keeps its columns' width (the causal table's seven, neuron numbers
# included, need about 470 px); on a narrower page (a 1024 px projector) the second moves under the first instead of
# hiding columns behind a sideways scroll.
TABLE_WIDTHS = {WRITES_PANEL: 260, MATTERS_PANEL: 470}
TABLES_STYLE = (
    "<style>"
    + " ".join(
        f"[data-testid=stLayoutWrapper]:has(> .st-key-{panel}) {{min-width: min(100%, {px}px);}}" for panel, px in TABLE_WIDTHS.items()
    )
    + "</style>"
)
CURVE_BASELINES = {
    "steered": "steered toward the emotion",
    "asked": "asked for the emotion",
    "continued": "continuing an emotional first sentence",
}

results = page_results()
view = current()
shape = results.shape
tour.banner(results, view.emotion, CIRCUIT)

st.title(f"The {view.emotion} circuit")
st.caption(f"{glossary.ATTENTION_MLP} {glossary.HEAD} {glossary.NEURON}")
st.markdown(narrative.circuit_sentence(results, view.emotion))

st.subheader("Two ways to rank the parts")
st.markdown(narrative.rankings_sentence(view.emotion))
kind_col, k_col = st.columns([1, 2], vertical_alignment="bottom")
kind = kind_col.radio("Parts", KINDS, format_func=KIND_LABELS.get, horizontal=True, key="circuit_rank_kind")
k = k_col.slider("How many to list", 5, 100, 20, step=5, key="circuit_k", help="Length of the two ranked tables below.")
top_heads = frames.ranked_table(results.top_heads(view.emotion, k))
top_neurons = frames.ranked_table(results.top_neurons(view.emotion, k))
st.html(TABLES_STYLE)
tables = st.container(horizontal=True, gap="large")
writes_col, matters_col = tables.container(key=WRITES_PANEL), tables.container(key=MATTERS_PANEL)
with writes_col:
    st.markdown(f"**Writes {view.emotion}** (the paper's score)")
    writes = top_heads if kind == "head" else top_neurons
    st.dataframe(part_view.linked(writes, kind), hide_index=True, width="stretch", height=280, column_config=SCORE_FORMAT)
    st.caption(
        "How much the part pushes the hidden state toward the emotion at the prompt's last word (for a head: how much the "
        "emotion's signal there drops without it), averaged over prompts asking for the emotion."
    )
    table_download(writes, f"writes_{kind}", view.emotion)
with matters_col:
    st.markdown(f"**Matters when switched off** (knockout effect on replies steered toward {view.emotion})")
    try:
        matters = frames.causal_table(results.causal_ranking(view.emotion, kind, "mean", "steered", k))
    except CacheError as error:
        st.info(str(error))
    else:
        st.dataframe(part_view.linked(matters, kind), hide_index=True, width="stretch", height=280, column_config=CAUSAL_FORMAT)
        st.caption(
            f"Estimated fall of the model's internal {view.emotion} reading over a reply steered toward {view.emotion} when the "
            "part is switched off (mean ablation), of the other emotions' readings, and the rise of its loss on plain text; "
            "ranked by how specifically it lowers this emotion, leaving out parts the model cannot do without."
        )
        table_download(matters, f"matters_{kind}", view.emotion)

st.subheader(f"Does pushing these parts make a reply {glossary.adjective(view.emotion)}?")
st.markdown(
    f"Circuit steering (the Steer page) adds the {view.emotion} shift at the {STEERING_HEADS} heads and {STEERING_NEURONS} "
    "neurons at the top of the *matters when switched off* ranking, at the tuned strength."
)
steering_report.show(results.report, "circuit", view.emotion)

st.subheader("Do the top parts matter more than chance?")
curves = ((results.report or {}).get("ablation") or {}).get("curves")
if curves is None:
    st.info("The knockout curves come from the evaluation on held-out scenarios: run `python -m emo_core evaluate`.")
else:
    baseline = st.radio("Replies", tuple(curves["reading"]), format_func=CURVE_BASELINES.get, horizontal=True, key="circuit_curve_baseline")
    st.markdown(narrative.curves_sentence(curves, baseline, kind, view.emotion))
    curve = charts.knockout_curve_chart(
        frames.curve_frame(curves, baseline, kind, view.emotion), f"Switching off {KIND_LABELS[kind]}: {view.emotion} on held-out replies"
    )
    st.altair_chart(curve, width="stretch")
    st.caption(
        "Each point switches off the top k parts of one ranking (solid) or k random parts from the same layers (dashed) and "
        f"measures how much the model's internal {view.emotion} reading falls over the reply (0 = no change, 1 = as much as "
        "steering adds); bars are 95% intervals. Measured on scenarios the rankings were never computed on."
    )
    chart_downloads(lambda: curve, f"knockout_curve_{kind}", view.emotion)


def set_selection(tokens: list[str]) -> None:
    """Callback: replace the selection (kept in the session and the link for the knockout view)."""
    st.session_state[SELECTION] = tokens
    st.session_state[PICK] = tokens


def add_component() -> None:
    """Callback: add the head or neuron typed in the 'add any' boxes, if the model has it."""
    component = Component(st.session_state[KIND], int(st.session_state[ADD_LAYER]), int(st.session_state[ADD_INDEX]))
    problem = out_of_range(component, shape["n_layers"], shape["n_heads"], shape["d_mlp"])
    st.session_state[ADD_PROBLEM] = problem
    if problem is None and component.token not in st.session_state[SELECTION]:
        set_selection([*st.session_state[SELECTION], component.token])


st.subheader("Choose parts to switch off")
st.caption("Your choice is kept while you move between pages and is part of the link in the address bar, ready for the knockout view.")
selected = list(st.session_state[SELECTION])
chosen, _ = parse_tokens(selected)
st.markdown(f"**Selected:** {describe(chosen)}.")
if chosen:
    st.dataframe(
        frames.selection_by_layer(chosen), hide_index=True, width="content", height=min(36 * (len({c.layer for c in chosen}) + 1), 250)
    )
    part_view.part_buttons(chosen, "circuit_look")
heads = from_pairs(((layer, head) for layer in range(shape["n_layers"]) for head in range(shape["n_heads"])), "head")
neurons = from_pairs(zip(top_neurons["layer"], top_neurons["neuron"], strict=True), "neuron")
options = list(dict.fromkeys([*selected, *(c.token for c in heads + neurons)]))
st.session_state[PICK] = selected
with st.expander(f"Edit the selection one by one ({len(selected)} selected)"):
    st.multiselect(
        "Selected heads and neurons",
        options,
        key=PICK,
        format_func=lambda token: token,
        on_change=lambda: st.session_state.update({SELECTION: list(st.session_state[PICK])}),
        placeholder="Nothing selected: pick from the list, or use the buttons below",
        help="L12H3 is head 3 of layer 12; L10N123 is neuron 123 of layer 10. The list offers every head and the listed top neurons.",
    )
circuit = [c.token for c in circuit_components(results.circuit(view.emotion))]
top_k = [c.token for c in from_pairs(zip(top_heads["layer"], top_heads["head"], strict=True), "head")[:5]] + [c.token for c in neurons[:5]]
buttons = st.container(horizontal=True)
buttons.button(f"Select the {view.emotion} circuit ({len(circuit)})", on_click=set_selection, args=(circuit,), key="circuit_select")
buttons.button("Select the top 5 heads and top 5 neurons", on_click=set_selection, args=(top_k,), key="circuit_top")
buttons.button("Clear the selection", on_click=set_selection, args=([],), key="circuit_clear")
st.caption(
    f"The {view.emotion} circuit is the paper's: inside the parts of the model that matter most for {view.emotion}, the heads "
    f"and neurons that write {view.emotion} most strongly while the model speaks with it. It is not what circuit steering on the "
    f"Steer page turns up: that pushes the top {count(STEERING_HEADS, 'head')} and {count(STEERING_NEURONS, 'neuron')} of the "
    f"*matters when switched off* ranking for {view.emotion}, which steer this small model's replies far better."
)
with st.expander("Add any head or neuron"):
    kind_col, layer_col, index_col, add_col = st.columns([2, 2, 3, 1], vertical_alignment="bottom")  # the long label on one line
    kind_col.selectbox("Kind", KINDS, key=KIND)
    layer_col.number_input("Layer", 0, shape["n_layers"] - 1, key=ADD_LAYER)
    index_col.number_input("Head or neuron number", 0, shape["d_mlp"] - 1, key=ADD_INDEX)
    add_col.button("Add", on_click=add_component, key="circuit_add")
    if st.session_state.get(ADD_PROBLEM):
        st.warning(st.session_state[ADD_PROBLEM])

st.subheader("Where the circuit lives")
heat = charts.head_heatmap(
    frames.grid_frame(results.head_scores(view.emotion), "head"), f"Importance of every attention head for {view.emotion}"
)
part_view.clickable(heat, HEAT, "head")
st.caption("Orange: switching the head off weakens the emotion; blue: it strengthens it; white: no effect. Click a head to open its page.")
chart_downloads(lambda: heat, "head_importance", view.emotion)

neuron_col, sublayer_col = st.columns(2, gap="large")
with neuron_col:
    dots = charts.neuron_chart(frames.top_per_layer(results.neuron_scores(view.emotion), 10), "The 10 strongest neurons of each layer")
    part_view.clickable(dots, DOTS, "neuron")
    st.caption("Each dot is one neuron; higher means it pushes harder toward the emotion. Click one to open its page.")
    chart_downloads(lambda: dots, "neurons_by_layer", view.emotion)
with sublayer_col:
    bars = charts.sublayer_chart(frames.sublayer_frame(results.sublayer_importance(view.emotion)), "How much each layer part matters")
    st.altair_chart(bars, width="stretch")
    st.caption("How much adding a little of the emotion at this part changes the model's final state toward that emotion.")
    chart_downloads(lambda: bars, "sublayer_importance", view.emotion)

similarity = results.cross_layer(view.emotion)
st.markdown(narrative.persistence_sentence(similarity.numpy(), view.emotion))
cross = charts.cross_layer_heatmap(frames.cross_layer_frame(similarity), f"The {view.emotion} direction compared across layers")
st.altair_chart(cross, width="stretch")
st.caption("Each cell compares the emotion's direction after one part of the model with its direction after another (1 = the same).")
chart_downloads(lambda: cross, "cross_layer", view.emotion)
