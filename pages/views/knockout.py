"""Knockout: switch heads and neurons off and see the emotion leave the words, on many scenarios at once and close up."""

from __future__ import annotations

import time
from dataclasses import replace

import pandas as pd
import streamlit as st

from emo_core.baselines import LIVE_KINDS, Baseline
from emo_core.generation import generate
from emo_core.interventions import touched_layers
from emo_core.judge import LABELS
from emo_core.knockout import chance_check, comparison_rows, effect_meter, reply_meter
from emo_core.part_activity import trace
from emo_core.parts import count, describe, knockout, parse_tokens
from emo_core.replay import record
from emo_core.scenarios import load_skeletons, neutral_prompts, spread
from emo_core.scoring import ROWS_PER_BATCH, SCORING_SETTINGS, Row, batch_edits
from emo_core.store import CacheError
from ui import frames, glossary, knockout_grid, knockout_parts, live, live_charts, pace, part_view, reproduce, tour
from ui.data import model_bundle, page_results
from ui.kept_keys import KnockoutInputs
from ui.pages import KNOCKOUT
from ui.run import BASELINE, KNOCKOUT_METHOD, KNOCKOUT_METHODS, KNOCKOUT_STRENGTH, MODE, MODES, PREPARED
from ui.state import current, note_problems, show_problems

CHANCE, METER, RECORDING, LAYERS = "knockout_chance", "knockout_meter", "knockout_recording", "knockout_layers"
JUDGED = "knockout_chance_judged"
BASELINE_LABELS = {"steered": "steered toward it", "asked": "asked for it", "plain": "nothing (plain)"}
MODE_LABELS = {"zero": "zero (silence them)", "mean": "mean (make them ordinary)"}
CHANCE_SCENARIOS, CHANCE_DRAWS = 12, 20
SAME = 0.1  # judge probabilities closer than this are "about the same" for one reply


def chance_probe(bundle, reading, results, prompts, emotion, chosen, mode, judged: bool) -> float:  # noqa: ANN001
    """Seconds the whole chance check will take: one of its scenarios timed, times their number; judged, plus its batches of
    replies, each as long as one such batch takes (``pace.decode_seconds``)."""
    with live.model_turn():
        one = pace.timed(lambda: chance_check(bundle, reading, results, prompts[:1], emotion, chosen, mode, CHANCE_DRAWS))
        seconds = one * len(prompts)
        if judged:
            prompt, shared = prompts[0]

            def run(tokens: int) -> list:
                return generate(bundle, [prompt] * ROWS_PER_BATCH, replace(SCORING_SETTINGS, max_new_tokens=tokens), shared)

            replies = len(prompts) * (CHANCE_DRAWS + 2)
            seconds += -(-replies // ROWS_PER_BATCH) * pace.decode_seconds(run, SCORING_SETTINGS.max_new_tokens)
    return seconds


results = page_results()
view = current()
emotion = view.emotion
if (asked_for := st.session_state.pop(PREPARED, None)) is not None:  # a link's ?prepared=<emotion>
    try:
        st.session_state.update(knockout_parts.prepared_settings(results, asked_for))
    except CacheError as error:
        note_problems([f"{error} Keeping the current parts."])
    show_problems()
tour.banner(results, emotion, KNOCKOUT)

st.title("Switch parts off")
st.caption(
    "Make the reply emotional, pick attention heads and neurons to switch off, and see whether the emotion leaves the words: on "
    f"twelve scenarios at once next to random parts, then close up on one. {glossary.KNOCKOUT} {glossary.HEAD} {glossary.NEURON}"
)

try:
    prepared = results.prepared(emotion)
except CacheError:
    prepared = None
scenario_col, baseline_col = st.columns([3, 2], gap="large")
with scenario_col:
    user = live.scenario_controls()
with baseline_col:
    baseline = st.radio(
        f"Make the reply {glossary.adjective(emotion)} by",
        LIVE_KINDS,
        key=BASELINE,
        format_func=BASELINE_LABELS.get,
        horizontal=True,
        persist_state="session",
    )
    method, strength = "direction", None
    if baseline == "steered":
        method = st.radio("Steering", KNOCKOUT_METHODS, key=KNOCKOUT_METHOD, horizontal=True, persist_state="session")
        tuned = results.steering_settings(method, emotion)["strength"]
        default = prepared.baseline.strength if prepared is not None and prepared.baseline.method == method else tuned
        strength = live.strength_control(
            results,
            method,
            emotion,
            KNOCKOUT_STRENGTH,
            default,
            f"The tuned strength, {tuned:g}, was chosen on training scenarios as the strongest that keeps replies fluent"
            + (
                f"; the prepared knockout's baseline uses {default:g}, where replies carry {emotion} more firmly."
                if default != tuned
                else "."
            ),
        )
    st.caption(
        "A knockout can only weaken an emotion the reply has, and this small model mostly ignores a request for one, so the "
        "reply is *steered* by default. *Asked* puts the request in the prompt; *plain* asks for nothing."
    )

st.subheader("Parts to switch off")
chosen = knockout_parts.selected()
base = Baseline(baseline, method, strength)
bundle = model_bundle(view.model)
kit = results.steering_kit(bundle) if bundle is not None else None
pushed = base.pushes(kit, emotion) if kit is not None else frozenset()
st.markdown(f"**Selected:** {describe(chosen)}." + (" Nothing is switched off yet: pick parts below." if not chosen else ""))
part_view.part_buttons(chosen, "knockout_look")
if prepared is not None:
    st.caption(
        f"*Prepared for {emotion}*: {prepared.size} of the causal ranking, {prepared.mode} ablation, on a reply "
        f"{prepared.baseline.describe(kit, emotion) if kit is not None else 'steered'}; on {prepared.prompts} training scenarios it "
        f"removed {emotion} from {prepared.removed:.0%} of the replies that had it, random sets from {prepared.random_removed:.0%}."
        + ("" if prepared.eligible else " No candidate met the build's checks for this emotion, so this is the best of them.")
    )
knockout_parts.presets(results, emotion, pushed)
if pushed and (overlap := [c for c in chosen if c in pushed]):
    st.warning(
        f"{count(len(overlap), 'selected part')} {'is' if len(overlap) == 1 else 'are'} among the {len(pushed)} parts circuit steering "
        "pushes: switching them off only undoes the push that made the reply emotional, which says nothing about the model. "
        "The *Top* buttons leave them out.",
        icon=":material/undo:",
    )
scores, score_name = knockout_parts.head_colours(results, emotion)
grid_key = knockout_parts.grid_key()
st.altair_chart(
    live_charts.head_grid(knockout_parts.grid_frame(scores, chosen), score_name),
    key=grid_key,
    on_select=lambda: knockout_parts.grid_clicked(grid_key),
    selection_mode=["cell"],
    width="stretch",
)
st.caption(f"Click a cell to switch that head off (✕) or on again. Colour: each head's {score_name} for {emotion}.")
knockout_parts.neuron_adders(results, emotion)
mode = st.radio("How to switch them off", MODES, key=MODE, format_func=MODE_LABELS.get, horizontal=True, persist_state="session")
st.caption(
    "Zero sets a part's output to nothing; mean replaces it with its average output over emotion-free prompts, so only what it "
    "says about *this* prompt is removed."
)

if bundle is None or kit is None:
    st.stop()
reading = results.reading()
means = results.neutral_means
settings = live.decoding_controls()

st.subheader(f"On {knockout_grid.SCENARIOS} scenarios at once")
st.markdown(
    f"One reply is an anecdote. This writes, for {knockout_grid.SCENARIOS} scenarios the model was never tuned on, the baseline "
    f"reply, the reply with your parts off, and the reply with as many random parts from the same layers off (a fresh draw per "
    f"scenario), all in one batch. Each reply is tinted by how much {emotion} the judge reads in it."
)
knockout_grid.section(bundle, kit, base, emotion, chosen, mode, means, settings)

st.subheader("One scenario, close up")
if user is None:
    st.stop()
prompt = base.prompt(bundle, user, emotion)
shared = base.edits(kit, emotion)
close_up = comparison_rows(bundle, kit, base, [user], emotion, chosen, mode, means, seed=settings.seed) if chosen else []
control = parse_tokens(dict(close_up[2].tags)["parts"].split())[0] if close_up else []  # the random set its third row drew
close_up = close_up or [Row(prompt, emotion, tuple(shared))] * 3  # nothing chosen: three copies of the baseline
knocked, controlled = knockout(chosen, mode, means), knockout(control, mode, means)
judged_check = bool(st.session_state.get(JUDGED, False))  # its toggle is drawn further down
inputs = KnockoutInputs(view.model, prompt, emotion, base, tuple(c.token for c in chosen), mode, view.layer, settings, judged_check)
if st.session_state.get(METER, (None,))[0] != inputs.key("meter"):
    with live.model_turn():
        if st.session_state.get(RECORDING, (None,))[0] != inputs.key("recording"):
            st.session_state[RECORDING] = (inputs.key("recording"), record(bundle, prompt, shared))
        recorded = st.session_state[RECORDING][1]
        st.session_state[METER] = (inputs.key("meter"), effect_meter(bundle, reading, recorded, knocked, controlled, (view.layer,)))
meter = st.session_state[METER][1]
index = results.emotion_index(emotion)
before, after, chance = (float(value[index]) for value in (meter.baseline, meter.knocked_out, meter.control))
st.markdown("**Before any word is written** (the model's internal reading at the prompt's last word)")
left, middle, right = st.columns(3)
left.metric(f"{emotion.capitalize()}, baseline", f"{before:.2f}")
middle.metric("Your parts off", f"{after:.2f}", f"{after - before:+.2f}", delta_color="inverse" if after < before else "normal")
right.metric(f"{count(len(control), 'random part')} off", f"{chance:.2f}", f"{chance - before:+.2f}", delta_color="off")
st.caption(
    "Parts that act while the reply is written barely show here; the reading over the reply, below the replies, is where they "
    f"do. {glossary.READING}"
)

show_random = st.toggle("Show the random set's reply as a third column", key="knockout_show_random")
run_key = inputs.key("replies")
rows = batch_edits(close_up)
titles = [f"**Baseline** ({BASELINE_LABELS[baseline]})", f"**With {describe(chosen)} off**"]
if show_random:
    titles.append(f"**With {count(len(control), 'random part')} off**")
shown = live.paired_replies("knockout", titles, run_key, bundle, reading, emotion, [row.prompt for row in close_up], rows, settings)
if shown is not None:
    replies, outs, start = shown
    where = "The replies are the same." if start is None else f"The replies part at token {start + 1} (highlighted)."
    judged = [out.probability(emotion) for out in outs]
    mine, theirs = judged[1] - judged[0], judged[2] - judged[0]
    if abs(mine - theirs) < SAME:
        verdict = f"That is about what the random parts did ({judged[0]:.2f} → {judged[2]:.2f}): within chance for one reply."
    elif mine < theirs:
        verdict = f"The random parts' reply kept more of it ({judged[0]:.2f} → {judged[2]:.2f}): your parts did more than chance here."
    elif mine > 0:
        verdict = f"Switching your parts off raised it instead; the random parts' reply went {judged[0]:.2f} → {judged[2]:.2f}."
    else:
        verdict = f"The random parts' reply lost more of it ({judged[0]:.2f} → {judged[2]:.2f}): your parts did less than chance here."
    reads = [LABELS[int(out.probabilities.argmax())] for out in outs]
    st.markdown(
        f"**{where}** The baseline reads as {reads[0]}; with your parts off the reply reads as {reads[1]}, and the judge's "
        f"{emotion} went from {judged[0]:.2f} to {judged[1]:.2f}. {verdict} "
        f"One reply is an anecdote: the grid above counts {knockout_grid.SCENARIOS}."
    )
    forced_key = (run_key, "forced")
    if st.session_state.get("knockout_forced", (None,))[0] != forced_key:
        with live.model_turn():
            levels = reply_meter(bundle, reading, prompt, replies[0].token_ids, shared, knocked, controlled)[:, index]
        st.session_state["knockout_forced"] = (forced_key, [float(v) for v in levels])
    over = st.session_state["knockout_forced"][1]
    st.markdown("**Over the baseline's reply** (the model's internal reading while it reads the baseline reply back, word by word)")
    left, middle, right = st.columns(3)
    left.metric(f"{emotion.capitalize()}, baseline", f"{over[0]:.2f}")
    middle.metric("Your parts off", f"{over[1]:.2f}", f"{over[1] - over[0]:+.2f}", delta_color="inverse" if over[1] < over[0] else "normal")
    right.metric(f"{count(len(control), 'random part')} off", f"{over[2]:.2f}", f"{over[2] - over[0]:+.2f}", delta_color="off")
    st.caption(
        "The baseline reply is fed back word by word (teacher-forced) with your parts off, and with the random parts off, and the "
        "reading is averaged over its words: the same words, so only what the parts do to the model's inner state differs."
    )
    try:
        layered = results.layer_reading()
    except CacheError as error:
        st.info(str(error))
    else:
        layers_key = (run_key, "layers")
        if st.session_state.get(LAYERS, (None,))[0] != layers_key:
            with live.model_turn():
                traced = [
                    trace(bundle, row.prompt, reply.token_ids, row.interventions, attention=False, sites=("resid_post",))
                    for row, reply in zip(close_up[:2], replies[:2], strict=True)
                ]
            st.session_state[LAYERS] = (layers_key, traced)
        st.markdown(f"**The {emotion} reading, layer by layer**, in the baseline reply and in the reply with your parts off")
        drawn = [part_view.layer_frame(text, layered, results.emotions, emotion) for text in st.session_state[LAYERS][1]]
        bound = max(live_charts.scale_end(cells["reading"]) for cells, _ in drawn)  # one scale, so the two compare by eye
        for (cells, words), name in zip(drawn, ("Baseline", "Your parts off"), strict=True):
            st.altair_chart(part_view.layer_chart(cells, words, name, bound), width="stretch")
        st.caption(part_view.layer_caption(layered, results.emotions, emotion, touched_layers(bundle.adapter, shared)))
reproduce.expander(base, emotion, chosen, mode, settings, [user], reproduce.current_scenario_keys())

st.subheader("Is it more than chance inside the model?")
st.markdown(
    f"One click switches your parts off on {CHANCE_SCENARIOS} scenarios the model was never tuned on, and does the same with "
    f"{CHANCE_DRAWS} random sets of parts from the same layers. If your parts matter, their effect stands apart from the random ones."
)
st.toggle(f"Also write and judge every reply ({(CHANCE_DRAWS + 2) * CHANCE_SCENARIOS} replies)", key=JUDGED)
chance_key = inputs.key("chance")
evaluation = spread(neutral_prompts(load_skeletons("eval")), CHANCE_SCENARIOS)
prompts = [(base.prompt(bundle, p.user, emotion), shared) for p in evaluation]
action = "chance_judged" if judged_check else "chance"
row = st.container(horizontal=True, vertical_alignment="center")
clicked = row.button("Run the check", icon=":material/casino:", key="knockout_chance_run", disabled=not chosen)
if chosen:
    seconds = pace.estimate(action, 1, lambda: chance_probe(bundle, reading, results, prompts, emotion, chosen, mode, judged_check))
    row.caption(f"{pace.say(seconds)} on this machine (measured).")
cancel_slot = row.empty()
if live.cancelled("knockout_chance"):
    st.info("The check was cancelled; nothing was counted. Run it again when you like.")
if clicked:
    bar = st.progress(0.0, text="Switching parts off on the evaluation scenarios…")
    started = time.perf_counter()
    with live.cancellable("knockout_chance", cancel_slot), live.model_turn():
        check = chance_check(
            bundle,
            reading,
            results,
            prompts,
            emotion,
            chosen,
            mode,
            CHANCE_DRAWS,
            judge=live.judge() if judged_check else None,
            progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} steps"),
        )
    pace.record(action, time.perf_counter() - started, 1)
    bar.empty()
    st.session_state[CHANCE] = (chance_key, check)
if st.session_state.get(CHANCE, (None,))[0] == chance_key:
    check = st.session_state[CHANCE][1]
    measures = [("reading", "drop of the internal reading", check.reading_drop, check.random_reading_drops)]
    if check.judge_drop is not None:
        measures.append(("judge", "drop of the judge's probability", check.judge_drop, check.random_judge_drops))
    for name, label, mine, others in measures:
        frame = pd.DataFrame({"effect": [mine, *others], "which": ["your selection"] + ["random"] * len(others)})
        st.altair_chart(live_charts.chance_strip(frame, f"{label} of {emotion}"), width="stretch", key=f"knockout_chance_{name}")
        beaten = sum(other >= mine for other in others)
        st.caption(
            f"Your selection {'lowered' if mine >= 0 else 'raised'} {emotion} by {abs(mine):.3f} on average ({label}); {beaten} of "
            f"{len(others)} random sets lowered it at least as much"
            f"{' — more than chance' if beaten == 0 and mine > 0 else ''}."
        )

st.subheader(f"The knockout on the map of layer {view.layer}")
try:
    placed = results.place_states(meter.states[:2, 0], view.layer)
except CacheError as error:
    st.info(str(error))
else:
    moved = frames.moved_frame(placed, ("baseline", "knocked out"))
    chart = live_charts.map_with_arrow(frames.map_frame(results, view.layer, "umap"), moved, frames.map_extent(results, "umap"))
    st.altair_chart(chart, width="stretch", key="knockout_map")
    st.caption(
        "The Clusters map of this layer (change the layer in the sidebar). The white dot is the baseline run and the black arrow head "
        "the same run with your parts off, each placed among the prompts whose hidden state at the prompt's last word is most like its own."
    )
