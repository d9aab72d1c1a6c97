"""The Knockout page's main result: the current knockout on twelve scenarios at once, judged in the words.

One batched generation writes, per evaluation scenario, the baseline reply, the reply with the chosen parts off, and
the reply with a matched random set off (a fresh set per scenario, ``knockout.comparison_rows``). The grid tints each
reply by the judge's probability of the emotion and counts, in plain words, how many replies lost it each way, with a
one-sided Fisher exact test of the knockout against the random sets. One reply is an anecdote; twelve, next to chance,
are evidence.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import streamlit as st

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.interventions import AblationMode
from emo_core.knockout import Tally, comparison_rows, tally
from emo_core.parts import Component, NeutralMeans, count, describe
from emo_core.scenarios import PromptSpec, load_skeletons, neutral_prompts, spread
from emo_core.scoring import batch_edits, score_replies
from emo_core.steering import SteeringKit
from ui import live, pace, reproduce
from ui.palette import EMOTION_COLORS

SCENARIOS = 12
LAST, RUN, PARTIAL = "knockout_grid_last", "knockout_grid", "knockout_grid_partial"
COLUMNS = (("baseline", "Baseline"), ("knocked_out", "Your parts off"), ("random", "Random parts off"))
REDRAW_EVERY = 4  # tokens between redraws while the grid writes: each redraw sends all 36 replies to the browser
STYLE = """<style>
.ko-grid {width: 100%; border-collapse: separate; border-spacing: 4px; table-layout: fixed; font-size: 1.02rem;}
.ko-grid th {text-align: left; font-size: 0.95rem; padding: 2px 6px;}
.ko-grid td {vertical-align: top; padding: 6px 8px; border-radius: 6px; line-height: 1.35;}
.ko-grid td.scenario {font-size: 0.82rem; color: #555; width: 19%;}
.ko-grid .verdict {display: block; margin-top: 4px; font-size: 0.8rem; font-weight: 600;}
</style>"""


def scenarios() -> list[PromptSpec]:
    """The grid's scenarios: twelve from the evaluation split, spread over its themes and outcomes (never tuned on)."""
    return spread(neutral_prompts(load_skeletons("eval")), SCENARIOS)


def _tint(emotion: str, probability: float) -> str:
    colour = EMOTION_COLORS[emotion].lstrip("#")
    red, green, blue = (int(colour[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({red}, {green}, {blue}, {0.08 + 0.55 * probability:.2f})"


def grid_html(specs: Sequence[PromptSpec], texts: Sequence[str], emotion: str, scores: pd.DataFrame | None = None) -> str:
    """The grid as an HTML table: a row per scenario, the baseline, knocked-out and random replies (``texts`` in
    ``comparison_rows`` order); with ``scores`` (``score_replies``), each reply tinted by the judge's probability of
    ``emotion`` and labelled with what the judge reads."""
    width = len(texts) // max(1, len(specs))
    head = "".join(f"<th>{title}</th>" for _, title in COLUMNS[:width])
    body = []
    for s, spec in enumerate(specs):
        cells = [f'<td class="scenario">{html.escape(spec.user).replace(chr(10), "<br>")}</td>']
        for v in range(width):
            i = s * width + v
            text = html.escape(texts[i]) if texts[i].strip() else "<i>(nothing yet)</i>"
            style, verdict = "background: #f3f3f3", ""
            if scores is not None:
                row = scores.iloc[i]
                style = f"background: {_tint(emotion, float(row['p_target']))}"
                reads = "not language" if row["degenerate"] else f"reads as {row['predicted']}"
                verdict = f'<span class="verdict">{reads} · {emotion} {float(row["p_target"]):.2f}</span>'
            cells.append(f'<td style="{style}">{text}{verdict}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'{STYLE}<table class="ko-grid"><tr><th>Scenario</th>{head}</tr>{"".join(body)}</table>'


def counts_sentence(counted: Tally, emotion: str, parts: Sequence[Component], n_random: int) -> str:
    """The grid's result in plain words, with how unusual it is against the random sets."""
    if not counted.carried:
        return (
            f"None of the {counted.scenarios} baseline replies reads as {emotion}, so nothing can be removed: make the baseline "
            "stronger (or use the prepared knockout's baseline) and run it again."
        )
    lead = f"Of {counted.scenarios} baseline replies, {counted.carried} read as {emotion}. "
    mine = f"With {describe(parts)} off, **{counted.removed} of {counted.carried}** lost their {emotion}"
    drawn = f"{count(n_random, 'random part')} from the same layers"
    chance = f"with {drawn} off (a fresh set per scenario), **{counted.random_removed} of {counted.carried}** did."
    p = counted.p_value
    if counted.removed <= counted.random_removed:
        verdict = "Your parts removed it no more often than random parts: on these scenarios they do not stand out."
    elif p < 0.05:
        odds = "less than 0.1%" if p < 0.001 else f"only {p:.1%}"
        verdict = f"A gap this large would arise by chance {odds} of the time (one-sided Fisher exact test): more than chance."
    else:
        verdict = f"A gap this large would arise by chance {p:.0%} of the time (one-sided Fisher exact test): within chance."
    broken = ""
    if counted.degenerate:
        broken = f" {count(counted.degenerate, 'knocked-out reply')} no longer read as language (marked *not language*)."
    return f"{lead}{mine}; {chance} {verdict}{broken}"


def _probe(bundle: ec.ModelBundle, prompts: list[str], edits: list, settings: ec.GenerationSettings) -> float:
    """Seconds per token of the whole grid, from its own batch timed (``pace.decode_seconds``)."""

    def run(tokens: int) -> list[ec.Reply]:
        return ec.generate(bundle, prompts, replace(settings, max_new_tokens=tokens), edits)

    with live.model_turn():
        return pace.decode_seconds(run, settings.max_new_tokens) / settings.max_new_tokens


def section(
    bundle: ec.ModelBundle,
    kit: SteeringKit,
    baseline: Baseline,
    emotion: str,
    parts: Sequence[Component],
    mode: AblationMode,
    means: NeutralMeans,
    settings: ec.GenerationSettings,
) -> None:
    """The grid's button, its measured time, the streamed grid with Stop, the judged result, and how to reproduce it."""
    specs = scenarios()
    run_key = (bundle.name, baseline, emotion, tuple(parts), mode, settings)
    rows = comparison_rows(bundle, kit, baseline, [p.user for p in specs], emotion, parts, mode, means, seed=settings.seed)
    prompts, edits = [row.prompt for row in rows], batch_edits(rows)
    seconds = pace.estimate("grid", settings.max_new_tokens, lambda: _probe(bundle, prompts, edits, settings)) if parts else 0.0
    buttons = st.container(horizontal=True, vertical_alignment="center")
    clicked = buttons.button(
        f"Run on {SCENARIOS} scenarios",
        type="primary",
        icon=":material/grid_view:",
        key="knockout_grid_run",
        disabled=not parts,
        help=f"{len(rows)} replies of up to {settings.max_new_tokens} tokens in one batch, then judged.",
    )
    buttons.caption(f"{pace.say(seconds)} on this machine (measured)." if parts else "Pick parts to switch off first.")
    stop_slot = buttons.empty()
    sentence, slot = st.empty(), st.empty()
    if live.cancelled(RUN):
        partial = st.session_state.pop(PARTIAL, None)
        st.info("Stopped: the grid was not finished, so nothing is counted. Run it again to see the whole result.")
        if partial:
            slot.html(grid_html(specs, partial, emotion))
        return
    if clicked:
        started = time.perf_counter()
        texts = [""] * len(rows)
        with live.cancellable(RUN, stop_slot, "Stop"):
            for step, replies in enumerate(live.shared_replies(bundle, prompts, settings, edits)):
                texts = [reply.text for reply in replies]
                st.session_state[PARTIAL] = texts
                if step % REDRAW_EVERY == 0:
                    slot.html(grid_html(specs, texts, emotion))
        scores = score_replies(live.judge(), rows, replies)
        pace.record("grid", time.perf_counter() - started, settings.max_new_tokens)
        st.session_state.pop(PARTIAL, None)
        st.session_state[LAST] = (run_key, texts, scores, list(parts))
    stored = st.session_state.get(LAST)
    if stored is None:
        return
    stored_key, texts, scores, shown_parts = stored
    if stored_key != run_key:
        st.caption("This grid is from earlier settings; press *Run* to write it again.")
    sentence.markdown(counts_sentence(tally(scores), emotion, shown_parts, len(shown_parts)))
    slot.html(grid_html(specs, texts, emotion, scores))
    reproduce.expander(baseline, emotion, parts, mode, settings, [p.user for p in specs], [f"{p.skeleton_id}:{p.valence}" for p in specs])
