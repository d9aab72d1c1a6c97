"""Knockout: switch heads and neurons off and watch the reply, and the model's inner emotion reading, change."""

from __future__ import annotations

import random

import pandas as pd
import streamlit as st

from emo_core.baselines import LIVE_KINDS, Baseline
from emo_core.interventions import on_rows
from emo_core.knockout import chance_check, effect_meter
from emo_core.parts import describe, knockout, matched_random
from emo_core.replay import record
from emo_core.scenarios import load_skeletons, neutral_prompts, spread
from emo_core.store import CacheError
from ui import frames, glossary, knockout_parts, live, live_charts, tour
from ui.data import model_bundle, page_results
from ui.pages import KNOCKOUT
from ui.run import BASELINE, KNOCKOUT_METHOD, KNOCKOUT_METHODS, MODE, MODES
from ui.state import current

CHANCE, METER, RECORDING = "knockout_chance", "knockout_meter", "knockout_recording"
BASELINE_LABELS = {"steered": "steered toward it", "asked": "asked for it", "plain": "nothing (plain)"}
MODE_LABELS = {"zero": "zero (silence them)", "mean": "mean (make them ordinary)"}
CHANCE_SCENARIOS, CHANCE_DRAWS = 12, 20

results = page_results()
view = current()
emotion = view.emotion
tour.banner(results, emotion, KNOCKOUT)

st.title("Switch parts off")
st.caption(
    "Choose a scenario, make the reply emotional, pick attention heads and neurons to switch off, and compare the reply with and "
    f"without them, next to a random set of parts of the same size. {glossary.KNOCKOUT} {glossary.HEAD} {glossary.NEURON}"
)

scenario_col, baseline_col = st.columns([3, 2], gap="large")
with scenario_col:
    user = live.scenario_controls()
with baseline_col:
    baseline = st.radio(
        f"Make the reply {emotion} by", LIVE_KINDS, key=BASELINE, format_func=BASELINE_LABELS.get, horizontal=True, persist_state="session"
    )
    method = "direction"
    if baseline == "steered":
        method = st.radio("Steering", KNOCKOUT_METHODS, key=KNOCKOUT_METHOD, horizontal=True, persist_state="session")
    report = results.report or {}
    asked, steered = (report.get("steering", {}).get(name, {}).get("overall") for name in ("asked", "direction"))
    odds = f" (asked: {asked:.0%} of replies on target, as often as unasked; steered: {steered:.0%})" if asked and steered else ""
    st.caption(
        f"*Steered* is the default because this small model ignores a request for an emotion in its words{odds}: a knockout can "
        "only weaken an emotion the reply has. *Asked* puts the request in the prompt; *plain* asks for nothing."
    )

st.subheader("Parts to switch off")
chosen = knockout_parts.selected()
st.markdown(f"**Selected:** {describe(chosen)}." + (" Nothing is switched off yet: pick parts below." if not chosen else ""))
knockout_parts.presets(results, emotion)
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

bundle = model_bundle(view.model)
if bundle is None or user is None:
    st.stop()
reading = results.reading()
kit = results.steering_kit(bundle)
base = Baseline(baseline, method)
prompt = base.prompt(bundle, user, emotion)
shared = base.edits(kit, emotion)
control = matched_random(chosen, results.shape, random.Random(0))
means = results.neutral_means
knocked, controlled = knockout(chosen, mode, means), knockout(control, mode, means)

st.subheader("Effect before any text is written")
recording_key = (view.model, prompt, emotion, baseline, method)
meter_key = (*recording_key, tuple(c.token for c in chosen), mode)
if st.session_state.get(METER, (None,))[0] != (*meter_key, view.layer):
    with live.model_turn():
        if st.session_state.get(RECORDING, (None,))[0] != recording_key:
            st.session_state[RECORDING] = (recording_key, record(bundle, prompt, shared))
        recorded = st.session_state[RECORDING][1]
        st.session_state[METER] = ((*meter_key, view.layer), effect_meter(bundle, reading, recorded, knocked, controlled, (view.layer,)))
meter = st.session_state[METER][1]
index = results.emotion_index(emotion)
before, after, chance = (float(value[index]) for value in (meter.baseline, meter.knocked_out, meter.control))
left, middle, right = st.columns(3)
left.metric(f"{emotion} inside the model, baseline", f"{before:.2f}")
middle.metric(
    f"with {describe(chosen)} off", f"{after:.2f}", f"{after - before:+.2f}", delta_color="inverse" if after < before else "normal"
)
right.metric(f"with {len(control)} random parts off", f"{chance:.2f}", f"{chance - before:+.2f}", delta_color="off")
st.caption(
    "One pass over the prompt: the model's internal reading of the emotion at the prompt's last word, with your parts off, and "
    f"with as many random parts from the same layers off. {glossary.READING}"
)

st.subheader("Write both replies")
settings = live.decoding_controls()
run_key = (*meter_key, settings)
rows = [
    *(on_rows(edit, (0, 1, 2)) for edit in shared),
    *knockout(chosen, mode, means, rows=(1,)),
    *knockout(control, mode, means, rows=(2,)),
]
titles = (f"**Baseline** ({BASELINE_LABELS[baseline]})", f"**With {describe(chosen)} switched off**")
shown = live.paired_replies("knockout", titles, run_key, bundle, reading, emotion, [prompt] * 3, rows, settings)
if shown is not None:
    _, outs, start = shown
    where = "The replies are the same." if start is None else f"The replies part at token {start + 1} (highlighted)."
    fell = outs[1].level(emotion) - outs[0].level(emotion)
    moved = outs[2].level(emotion) - outs[0].level(emotion)
    st.markdown(
        f"**{where}** Inside the model, {emotion} {'fell' if fell < 0 else 'rose'} from {outs[0].level(emotion):.2f} to "
        f"{outs[1].level(emotion):.2f}; a random set of {len(control)} parts from the same layers moved it by {moved:+.2f}. "
        f"The judge's {emotion} probability went from {outs[0].probability(emotion):.2f} to {outs[1].probability(emotion):.2f}."
    )

st.subheader("Is it more than chance?")
st.markdown(
    f"One click switches your parts off on {CHANCE_SCENARIOS} scenarios the model was never tuned on, and does the same with "
    f"{CHANCE_DRAWS} random sets of parts from the same layers. If your parts matter, their effect stands apart from the random ones."
)
judged = st.toggle("Also write and judge every reply (about 2 minutes)", key="knockout_chance_judged")
chance_key = (*meter_key, judged)
if st.button("Run the check", icon=":material/casino:", key="knockout_chance_run", disabled=not chosen):
    bar = st.progress(0.0, text="Switching parts off on the evaluation scenarios…")
    evaluation = spread(neutral_prompts(load_skeletons("eval")), CHANCE_SCENARIOS)
    prompts = [(base.prompt(bundle, p.user, emotion), shared) for p in evaluation]
    with live.model_turn():
        check = chance_check(
            bundle,
            reading,
            results,
            prompts,
            emotion,
            chosen,
            mode,
            CHANCE_DRAWS,
            judge=live.judge() if judged else None,
            progress=lambda done, total: bar.progress(done / total, text=f"{done} of {total} steps"),
        )
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
            f"Your selection lowered {emotion} by {mine:+.3f} on average ({label}); {beaten} of {len(others)} random sets did at "
            f"least as much{' — more than chance' if beaten == 0 and mine > 0 else ''}."
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
