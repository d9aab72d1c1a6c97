"""How well steering worked on scenarios it was never tuned on, from ``report.json``: the figure, how it was measured,
and two replies drawn at random, each with whether it counted and why not.

A reply counts when both judges (the MiniLM judge and the n-gram judge, trained on separate corpora) read the emotion
and the fluency check passes it: no punctuation runs, stretched words or repeated phrases, and it answers its scenario.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from ui.replies import plain

HOW = {"direction": "along its direction", "circuit": "through its circuit", "asked": "by asking", "plain": "plain"}
MEASURED = (
    "A reply counts only when two independent judges both read the emotion (a MiniLM classifier and an n-gram classifier, "
    "each trained on its own set of sentences we wrote) and the fluency check passes it: no runs of punctuation, no "
    "stretched words, no phrase said three times, English words, and it answers its scenario (close in meaning, in words "
    "the unsteered model finds natural as a reply). Scenarios: the evaluation split, never used for tuning."
)


def entry(report: Mapping | None, key: str) -> Mapping | None:
    """The report's steering figures for ``key`` (``plain``, ``asked``, ``direction`` or ``circuit``), if evaluated."""
    return ((report or {}).get("steering") or {}).get(key)


def sentence(report: Mapping, key: str, emotion: str) -> str:
    """One paragraph: how often steering toward ``emotion`` ``key``'s way counted, each judge alone, the broken share
    (of all the method's replies), and the plain replies as chance."""
    found = entry(report, key)
    if found is None:
        return f"Steering {HOW.get(key, key)} has not been evaluated yet: run `python -m emo_core evaluate`."
    per = len(found.get("per_emotion") or {}) or 1
    n = found.get("n", 0) // per
    text = (
        f"On {n} evaluation scenarios, **{found['per_emotion'][emotion]:.0%}** of the replies steered toward {emotion} "
        f"{HOW.get(key, key)} counted ({found['overall']:.0%} over all six emotions)."
    )
    judges = found.get("by_judge")
    if judges:
        text += (
            f" By one judge at a time: {judges['first']['per_emotion'][emotion]:.0%} (MiniLM) and "
            f"{judges['second']['per_emotion'][emotion]:.0%} (n-gram); the two judges named the same emotion for "
            f"{found['agreement']:.0%} of all the method's replies."
        )
    text += f" Over all emotions, {found['degenerate_rate']:.0%} of the replies broke down or ignored their scenario."
    plain = entry(report, "plain")
    if plain is not None and key != "plain":
        text += f" Plain replies, steered nowhere, count for {emotion} {plain['per_emotion'][emotion]:.0%} of the time (chance)."
    return text


def measured(report: Mapping) -> str:
    """How a reply was counted, with the fluency check's measured agreement with a reader when the report has it."""
    check = report.get("fluency_check")
    if not check:
        return MEASURED
    return (
        f"{MEASURED} Of the replies the check calls broken, {check['precision']:.0%} are broken to a reader, and it finds "
        f"{check['recall']:.0%} of the broken ones ({check['fluent'] + check['broken']} replies labelled by reading)."
    )


def verdict(example: Mapping, emotion: str) -> str:
    """Why one example reply counted or did not."""
    if example.get("hit"):
        return f"Counted: both judges read {emotion}, and the reply is fluent and on its scenario."
    if example.get("reason"):
        return f"Not counted: {example['reason']}."
    read = [example.get("predicted"), example.get("predicted_2")]
    return "Not counted: the judges read " + " and ".join(str(label) for label in read if label) + "."


def show(report: Mapping | None, key: str, emotion: str) -> None:
    """The figure for ``emotion`` with how it was measured and the report's two random replies."""
    st.markdown(sentence(report or {}, key, emotion))
    found = entry(report, key)
    if found is None:
        return
    st.caption(measured(report or {}))
    examples = (found.get("examples") or {}).get(emotion) or []
    for column, example in zip(st.columns(max(len(examples), 1)), examples, strict=False):
        with column:
            if example.get("scenario"):
                st.caption("Scenario: " + plain(str(example["scenario"])))
            st.markdown("> " + plain(" ".join(str(example.get("reply", "")).split())))
            st.caption(verdict(example, emotion))
