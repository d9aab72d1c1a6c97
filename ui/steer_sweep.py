"""The Steer page's dose-response sweep: judged and degenerate share of replies at each strength, cached per setting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import streamlit as st

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.results import Results
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows, score_replies
from emo_core.steering import SteeringKit
from emo_core.tuning import MAX_DEGENERATE
from ui import live, pace

MAX_BROKEN = MAX_DEGENERATE
FACTORS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # times the tuned strength


@st.cache_data(max_entries=256, show_spinner=False)
def _at_strength(
    model_id: str, emotion: str, method: str, strength: float, prompts: tuple[str, ...], safe: bool, _context: tuple
) -> tuple[float, float]:
    """Share of replies judged ``emotion`` and share of degenerate replies at one strength (cached per setting)."""
    bundle, results, kit = _context
    edits = tuple(Baseline("steered", method, strength).edits(kit, emotion))
    rows = [Row(prompt, emotion, edits) for prompt in prompts]
    settings = replace(SCORING_SETTINGS, classroom_safe=safe)
    scores = score_replies(live.judge(), rows, generate_rows(bundle, rows, settings, progress=lambda done, total: None))
    return float(scores["hit"].mean()), float(scores["degenerate"].mean())


def sweep(
    bundle: ec.ModelBundle,
    results: Results,
    kit: SteeringKit,
    emotion: str,
    method: str,
    tuned: float,
    prompts: Sequence[str],
    bar: st.delta_generator.DeltaGenerator,
    safe: bool = True,
) -> pd.DataFrame:
    """``strength``, ``judged`` and ``degenerate`` at each of ``FACTORS`` times the tuned strength, with a progress bar."""
    rows = []
    for done, factor in enumerate(FACTORS):
        strength = round(factor * tuned, 4)
        judged, degenerate = _at_strength(bundle.name, emotion, method, strength, tuple(prompts), safe, (bundle, results, kit))
        rows.append({"strength": strength, "judged": judged, "degenerate": degenerate})
        bar.progress((done + 1) / len(FACTORS), text=f"strength {strength:g}: {done + 1} of {len(FACTORS)}")
    return pd.DataFrame(rows)


def probe(bundle: ec.ModelBundle, kit: SteeringKit, emotion: str, method: str, tuned: float, prompts: Sequence[str]) -> float:
    """Seconds one strength of the sweep takes, from its own batch timed (``pace.decode_seconds``)."""
    edits = tuple(Baseline("steered", method, tuned).edits(kit, emotion))
    rows = [Row(prompt, emotion, edits) for prompt in prompts]

    def run(tokens: int) -> list[ec.Reply]:
        return generate_rows(bundle, rows, replace(SCORING_SETTINGS, max_new_tokens=tokens), progress=lambda done, total: None)

    with live.model_turn():
        return pace.decode_seconds(run, SCORING_SETTINGS.max_new_tokens)


def caption(sweep: pd.DataFrame, tuned: float, n_replies: int) -> str:
    """What the chart's marks mean, and why the tuned strength is shaded when it is."""
    text = f"Dashed line: the tuned strength ({tuned:g}). Shaded: strengths where more than {MAX_BROKEN:.0%} of replies broke down."
    at_tuned = sweep.loc[(sweep["strength"] - tuned).abs().idxmin()]
    if at_tuned["degenerate"] > MAX_BROKEN:
        broken = round(at_tuned["degenerate"] * n_replies)
        text += (
            f" The tuned strength is shaded here: {broken} of these {n_replies} replies broke down. Tuning allowed at most "
            f"{MAX_BROKEN:.0%} broken replies over many training scenarios; with {n_replies} replies a single broken one is "
            f"{1 / n_replies:.0%}, so a few scenarios can shade it where the training set did not."
        )
    return text


def long_form(sweep: pd.DataFrame, emotion: str) -> pd.DataFrame:
    """The sweep for the dose-response chart: one row per strength and measure, with the band each strength shades."""
    edges = sweep["strength"].tolist()
    half = [(b - a) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    low = [edges[0] - (half[0] if half else 0.5), *(e - h for e, h in zip(edges[1:], half, strict=True))]
    high = [*(e + h for e, h in zip(edges[:-1], half, strict=True)), edges[-1] + (half[-1] if half else 0.5)]
    frame = sweep.assign(low=low, high=high, broken=sweep["degenerate"] > MAX_BROKEN)
    return frame.melt(
        id_vars=["strength", "low", "high", "broken"],
        value_vars=["judged", "degenerate"],
        var_name="measure",
        value_name="value",
    ).replace({"measure": {"judged": f"judged {emotion}", "degenerate": "degenerate replies"}})
