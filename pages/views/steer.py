"""Steer: turn an emotion up (by asking, along its direction, or through its circuit) and compare with the plain reply."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from emo_core.baselines import Baseline
from emo_core.interventions import on_rows
from emo_core.scenarios import load_skeletons, neutral_prompts, spread
from emo_core.steering import STEERING_HEADS, STEERING_NEURONS
from ui import glossary, live, live_charts, pace, reproduce, steer_sweep, steering_report, tour
from ui.data import model_bundle, page_results
from ui.kept_keys import SteerInputs
from ui.pages import STEER
from ui.run import STEER_METHOD, STEER_METHODS, STRENGTH
from ui.state import current

METHOD_LABELS = {"direction": "along its direction", "circuit": "through its circuit", "asked": "by asking"}
SWEEP_SCENARIOS = 5

results = page_results()
view = current()
emotion = view.emotion
tour.banner(results, emotion, STEER)

st.title(f"Turn {emotion} up")
st.caption(
    f"Make the model's reply {glossary.adjective(emotion)} and compare it with the plain reply. *Direction* adds the emotion's "
    f"direction to the hidden state in the middle layers; *circuit* adds the emotion's shift only at the {STEERING_HEADS} heads "
    f"and {STEERING_NEURONS} neurons that matter most for {emotion} when switched off (the second ranking on the Circuit page); "
    f"*ask* just puts the request in the prompt. {glossary.STEERING} {glossary.JUDGE} Turned up, an emotion can make a small "
    "model's replies rude or crude (insults, slurs): try a run before showing it to a class."
)
scenario_col, method_col = st.columns([3, 2], gap="large")
with scenario_col:
    user = live.scenario_controls()
with method_col:
    method = st.radio(
        f"Turn {emotion} up", STEER_METHODS, key=STEER_METHOD, format_func=METHOD_LABELS.get, horizontal=True, persist_state="session"
    )
    tuned = None if method == "asked" else results.steering_settings(method, emotion)["strength"]
    if tuned is None:
        st.caption("Asking has no strength: the request is in the prompt or not.")
        strength = None
    else:
        strength = live.strength_control(
            results,
            method,
            emotion,
            STRENGTH,
            tuned,
            f"0 leaves the model untouched. The tuned strength, {tuned:g}, was chosen on training scenarios as the strongest "
            "that keeps replies fluent.",
        )
        st.button(  # short: the method column is about 190 px wide on a 1024 px screen, and a longer label was cut off
            f"Reset to tuned ({tuned:g})",
            on_click=lambda: st.session_state.update({STRENGTH: tuned}),
            key="steer_reset",
            help="Back to the tuned strength.",
        )

bundle = model_bundle(view.model)
if bundle is None or user is None:
    st.stop()
reading = results.reading()
kit = results.steering_kit(bundle)
plain_prompt = Baseline("plain").prompt(bundle, user)
turned_up = Baseline("asked") if method == "asked" else Baseline("steered", method, strength)
steered_prompt, edits = turned_up.prompt(bundle, user, emotion), turned_up.edits(kit, emotion)

settings = live.decoding_controls()
inputs = SteerInputs(view.model, user, emotion, method, strength, settings)
run_key = inputs.key("replies")
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
reproduce.steer_expander(turned_up, emotion, settings, user, reproduce.current_scenario_keys())

st.subheader("How often does it work?")
st.markdown("One reply is an anecdote. On scenarios the app never tuned on, with the tuned strength:")
steering_report.show(results.report, method, emotion)

if tuned is not None:
    st.subheader("How much is too much?")
    st.markdown(
        f"The harder the steering, the more {emotion} the replies carry, up to the point where they stop being language. The sweep "
        f"writes replies to this scenario and {SWEEP_SCENARIOS} evaluation scenarios at each strength and shows how often the judge "
        f"reads {emotion} and how many replies broke down (repeats, symbols, non-words)."
    )
    evaluation = [Baseline("plain").prompt(bundle, p.user) for p in spread(neutral_prompts(load_skeletons("eval")), SWEEP_SCENARIOS)]
    sweep_prompts = [plain_prompt, *evaluation]
    row = st.container(horizontal=True, vertical_alignment="center")
    clicked = row.button("Sweep the strength", icon=":material/ssid_chart:", key="steer_sweep")
    seconds = pace.estimate(
        "sweep", len(steer_sweep.FACTORS), lambda: steer_sweep.probe(bundle, kit, emotion, method, tuned, sweep_prompts)
    )
    row.caption(f"{pace.say(seconds)} on this machine (measured).")
    cancel_slot = row.empty()
    if live.cancelled("steer_sweep"):
        st.info("The sweep was cancelled; strengths it finished are kept and come back at once next time.")
    if clicked:
        bar = st.progress(0.0, text="Writing replies…")
        started = time.perf_counter()
        with live.cancellable("steer_sweep", cancel_slot), live.model_turn():
            sweep = steer_sweep.sweep(bundle, results, kit, emotion, method, tuned, sweep_prompts, bar, settings.classroom_safe)
        pace.record("sweep", time.perf_counter() - started, len(steer_sweep.FACTORS))
        bar.empty()
        st.session_state["steer_sweep_result"] = (inputs.key("sweep"), sweep)
    stored = st.session_state.get("steer_sweep_result")
    if stored is not None and stored[0] == inputs.key("sweep"):
        sweep: pd.DataFrame = stored[1]
        st.altair_chart(live_charts.dose_response(steer_sweep.long_form(sweep, emotion), emotion, tuned), width="stretch")
        st.caption(steer_sweep.caption(sweep, tuned, len(sweep_prompts)))
