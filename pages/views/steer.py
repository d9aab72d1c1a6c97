"""Steer: turn an emotion up (by asking, along its direction, or through its circuit) and compare with the plain reply."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from emo_core.baselines import Baseline
from emo_core.interventions import on_rows
from emo_core.scenarios import load_skeletons, neutral_prompts, spread
from emo_core.steering import STEERING_HEADS, STEERING_NEURONS
from ui import glossary, live, live_charts, steer_sweep, tour
from ui.data import model_bundle, page_results
from ui.pages import STEER
from ui.run import MAX_STRENGTH, STEER_METHOD, STEER_METHODS, STRENGTH
from ui.state import current

TUNED_FOR = "steer_strength_for"
METHOD_LABELS = {"direction": "along its direction", "circuit": "through its circuit", "asked": "by asking"}
SWEEP_SCENARIOS = 5

results = page_results()
view = current()
emotion = view.emotion
tour.banner(results, emotion, STEER)

st.title(f"Turn {emotion} up")
st.caption(
    f"Make the model reply with {emotion} and compare with its plain reply. *Direction* adds the emotion's direction to the hidden "
    f"state in the middle layers; *circuit* adds the emotion's shift only at the {STEERING_HEADS} heads and {STEERING_NEURONS} "
    f"neurons that matter most for {emotion} when switched off (the second ranking on the Circuit page); *ask* just puts the request "
    f"in the prompt. {glossary.STEERING} {glossary.JUDGE} Turned up, an emotion can make a small model's replies rude or crude "
    "(insults, slurs): try a run before showing it to a class."
)
scenario_col, method_col = st.columns([3, 2], gap="large")
with scenario_col:
    user = live.scenario_controls()
with method_col:
    method = st.radio(
        f"Turn {emotion} up", STEER_METHODS, key=STEER_METHOD, format_func=METHOD_LABELS.get, horizontal=True, persist_state="session"
    )
    tuned = None if method == "asked" else results.steering_settings(method, emotion)["strength"]
    if tuned is not None and (
        st.session_state.get(STRENGTH) is None or st.session_state.get(TUNED_FOR, (emotion, method)) != (emotion, method)
    ):
        st.session_state[STRENGTH] = tuned
    st.session_state[TUNED_FOR] = (emotion, method)
    if tuned is None:
        st.caption("Asking has no strength: the request is in the prompt or not.")
        strength = None
    else:
        top = min(MAX_STRENGTH, 3 * tuned)
        if st.session_state[STRENGTH] > top:  # a link may carry any strength up to MAX_STRENGTH
            st.warning(f"A strength of {st.session_state[STRENGTH]:g} is beyond this slider's end (3 × the tuned strength); using {top:g}.")
            st.session_state[STRENGTH] = top
        strength = st.slider(
            "Strength",
            0.0,
            top,
            key=STRENGTH,
            step=0.25,
            help=f"0 leaves the model untouched. The tuned strength, {tuned:g}, was chosen on training scenarios as the strongest "
            "that keeps replies fluent.",
        )
        st.button(f"Back to the tuned strength ({tuned:g})", on_click=lambda: st.session_state.update({STRENGTH: tuned}), key="steer_reset")

bundle = model_bundle(view.model)
if bundle is None or user is None:
    st.stop()
reading = results.reading()
kit = results.steering_kit(bundle)
plain_prompt = Baseline("plain").prompt(bundle, user)
turned_up = Baseline("asked") if method == "asked" else Baseline("steered", method, strength)
steered_prompt, edits = turned_up.prompt(bundle, user, emotion), turned_up.edits(kit, emotion)

settings = live.decoding_controls()
run_key = (view.model, user, emotion, method, strength, settings)
steered_title = f"**{emotion.capitalize()} {METHOD_LABELS[method]}**" + (f" (strength {strength:g})" if strength is not None else "")
rows = [on_rows(edit, (1,)) for edit in edits]
shown = live.paired_replies(
    "steer", ("**Plain reply**", steered_title), run_key, bundle, reading, emotion, [plain_prompt, steered_prompt], rows, settings
)
if shown is not None:
    _, outs, _ = shown
    st.markdown(
        f"The judge's {emotion} probability went from {outs[0].probability(emotion):.2f} to {outs[1].probability(emotion):.2f}; "
        f"inside the model, {emotion} went from {outs[0].level(emotion):.2f} to {outs[1].level(emotion):.2f}."
    )

if tuned is not None:
    st.subheader("How much is too much?")
    st.markdown(
        f"Steering harder makes replies more {emotion}, up to the point where they stop being language. The sweep writes replies to "
        f"this scenario and {SWEEP_SCENARIOS} evaluation scenarios at each strength and shows how often the judge reads {emotion} "
        "and how many replies broke down (repeats, symbols, non-words)."
    )
    if st.button("Sweep the strength", icon=":material/ssid_chart:", key="steer_sweep"):
        evaluation = [Baseline("plain").prompt(bundle, p.user) for p in spread(neutral_prompts(load_skeletons("eval")), SWEEP_SCENARIOS)]
        bar = st.progress(0.0, text="Writing replies…")
        with live.model_turn():
            sweep = steer_sweep.sweep(bundle, results, kit, emotion, method, tuned, [plain_prompt, *evaluation], bar)
        bar.empty()
        st.session_state["steer_sweep_result"] = ((view.model, user, emotion, method), sweep)
    stored = st.session_state.get("steer_sweep_result")
    if stored is not None and stored[0] == (view.model, user, emotion, method):
        sweep: pd.DataFrame = stored[1]
        st.altair_chart(live_charts.dose_response(steer_sweep.long_form(sweep, emotion), emotion, tuned), width="stretch")
        st.caption(
            f"Dashed line: the tuned strength ({tuned:g}). Shaded: strengths where more than {steer_sweep.MAX_BROKEN:.0%} of replies "
            "broke down."
        )
