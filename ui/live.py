"""Live runs on the one shared model: the run's controls, sharing the model, streaming replies into columns, read-outs.

Every browser session shares one loaded model. Interventions never leak between sessions (their hooks act
only in the thread that runs them, and only during its own forward calls, each limited to its own batch rows).
Live generations of all sessions are decoded together in one shared batch (``emo_core.batching``): a session that
presses *Generate* while others generate joins them at the next step. Other work on the model (the chance checks,
teacher forcing) takes turns with that batch, and a session that has to wait is told so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import streamlit as st

import emo_core as ec
from emo_core.batching import SharedBatch
from emo_core.interventions import Intervention
from emo_core.judge import LABELS, EmotionJudge, load_judge
from emo_core.limits import MAX_NEW_TOKENS, MAX_SEED, MAX_STRENGTH, MAX_TEXT
from emo_core.reading import EmotionReading
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS
from emo_core.scoring import SCORING_SETTINGS
from emo_core.turns import Turns
from ui import live_charts
from ui.replies import highlighted, plain
from ui.run import (
    CLASSROOM,
    DEFAULTS,
    MIN_TOKENS,
    SAMPLE,
    SCENARIO,
    SEED,
    TEXT,
    TOKENS,
    check_text,
    default_scenario,
    scenario_by_key,
    scenarios,
)

SOURCE = "run_source"
OURS, MINE = "One of ours", "My own words"
CURSOR = " ▌"
Slot = st.delta_generator.DeltaGenerator


@st.cache_resource(show_spinner=False)
def _model_turns() -> Turns:
    return Turns()


@st.cache_resource(show_spinner=False)
def _shared_batches() -> dict[int, SharedBatch]:
    return {}


_BATCHES = threading.Lock()


def shared_batch(bundle: ec.ModelBundle) -> SharedBatch:
    """The process's one shared batch of live generations on ``bundle`` (it keeps the bundle, so its id stays its own)."""
    with _BATCHES:
        batches = _shared_batches()
        if id(bundle) not in batches:
            batches[id(bundle)] = SharedBatch(bundle, _model_turns())
        return batches[id(bundle)]


def shared_replies(
    bundle: ec.ModelBundle,
    prompts: Sequence[str],
    settings: ec.GenerationSettings,
    edits: Sequence[Intervention] = (),
    observe: Sequence[int] = (),
) -> Iterator[list[ec.Reply]]:
    """Every row's reply so far, decoded in the shared batch with the other sessions' generations (see the module); says
    so while it waits for room, and stops the page with a message when too many wait."""
    notes: list[Slot] = []
    wait_note = "The shared model is busy; your reply starts as soon as there is room…"
    try:
        stream = shared_batch(bundle).stream(
            prompts, settings, edits, observe, on_wait=lambda: notes.append(st.info(wait_note, icon=":material/hourglass_top:"))
        )
        for replies in stream:
            while notes:
                notes.pop().empty()
            yield replies
    except ec.EmoCoreError as error:
        st.warning(str(error), icon=":material/group:")
        st.stop()


@contextmanager
def model_turn() -> Iterator[None]:
    """Run on the shared model when no other session is generating; say so while waiting, and stop the page with a
    message when the waiting line is full."""
    turns = _model_turns()
    notes: list[Slot] = []
    wait_note = "Another user is generating on the shared model; yours starts as soon as theirs ends…"
    try:
        turns.acquire(on_wait=lambda: notes.append(st.info(wait_note, icon=":material/hourglass_top:")))
    except ec.EmoCoreError as error:
        st.warning(str(error), icon=":material/group:")
        st.stop()
    for note in notes:
        note.empty()
    try:
        yield
    finally:
        turns.release()


@st.cache_resource(show_spinner="Loading the emotion judge (only the first time)…")
def judge() -> EmotionJudge:
    """The offline MiniLM emotion judge, loaded once per process."""
    return load_judge("minilm")


def _source_changed() -> None:
    if st.session_state[SOURCE] == OURS and not st.session_state.get(SCENARIO):
        st.session_state[SCENARIO] = default_scenario()
    if st.session_state[SOURCE] == MINE:
        st.session_state[SCENARIO] = ""


def scenario_controls() -> str | None:
    """Pick one of our scenarios or type one; returns the user turn, or ``None`` after saying why it cannot be used."""
    st.session_state[SOURCE] = OURS if st.session_state.get(SCENARIO) else MINE
    st.radio("Scenario", (OURS, MINE), key=SOURCE, horizontal=True, on_change=_source_changed, label_visibility="collapsed")
    if st.session_state[SOURCE] == OURS:
        by_key = scenario_by_key()
        key = st.selectbox(
            "Scenario and outcome",
            [item.key for item in scenarios()],
            key=SCENARIO,
            format_func=lambda key: by_key[key].label,
            persist_state="session",
            help="Our everyday scenarios (training and evaluation sets), each with a good, a neutral or a bad outcome.",
        )
        return by_key[key].user
    text = st.text_area(
        "Your scenario",
        key=TEXT,
        max_chars=MAX_TEXT,
        height=90,
        persist_state="session",
        placeholder="I waited an hour for the bus.\nIt drove past without stopping.",
        help="A situation in the first person, and what happened; the model replies to it.",
    )
    problem = check_text(text)
    if problem:
        st.warning(problem, icon=":material/edit_note:")
        return None
    return text


def decoding_controls() -> ec.GenerationSettings:
    """Greedy or seeded sampling, the seed (shown and changeable) and the reply length; otherwise the evaluation's
    decoding (``SCORING_SETTINGS``: a mild repetition penalty and no repeated 3-word phrase), so a steered reply does
    not loop and the page shows what the reported accuracy measured. Classroom-safe decoding (the sidebar) comes along."""
    greedy_col, seed_col, length_col = st.columns([2, 1, 2], vertical_alignment="bottom")
    sample = greedy_col.toggle(
        "Sample",
        key=SAMPLE,
        persist_state="session",
        help="Vary the wording. Off: always the most likely next word (greedy), so a run repeats exactly. On: random words, "
        "repeatable with the seed.",
    )
    seed_col.number_input("Seed", 0, MAX_SEED, key=SEED, disabled=not sample, persist_state="session")
    length_col.slider("Reply length (tokens)", MIN_TOKENS, MAX_NEW_TOKENS, key=TOKENS, persist_state="session")
    return session_decoding()


def session_decoding() -> ec.GenerationSettings:
    """The decoding the session's controls (``decoding_controls``, the sidebar) ask for, as a page without them uses it."""
    state = st.session_state
    return replace(
        SCORING_SETTINGS,
        max_new_tokens=int(state.get(TOKENS, DEFAULTS[TOKENS])),
        do_sample=bool(state.get(SAMPLE, False)),
        seed=int(state.get(SEED, 0)),
        classroom_safe=bool(state.get(CLASSROOM, True)),
    )


def strength_control(results: Results, method: str, emotion: str, key: str, default: float, help_text: str) -> float:
    """The steering strength slider, from 0 to its cap: with classroom-safe on, the strongest strength the build checked
    as fluent (``Results.fluent_strength``); otherwise 3 times the tuned strength. It starts at ``default`` and returns
    there when the emotion or the method changes; a strength above the cap (a link may carry one) is lowered to it, with
    a message."""
    tuned = results.steering_settings(method, emotion)["strength"]
    safe = bool(st.session_state.get(CLASSROOM, True))
    cap = results.fluent_strength(method, emotion) if safe else min(MAX_STRENGTH, 3 * tuned)
    marker = f"{key}_for"
    if st.session_state.get(key) is None or st.session_state.get(marker, (emotion, method)) != (emotion, method):
        st.session_state[key] = min(default, cap)
    st.session_state[marker] = (emotion, method)
    if st.session_state[key] > cap:
        why = "the classroom-safe cap (the strongest the build checked as fluent)" if safe else "this slider's end (3 × the tuned strength)"
        st.warning(f"A strength of {st.session_state[key]:g} is above {why}; using {cap:g}.", icon=":material/shield:")
        st.session_state[key] = cap
    ends = "the classroom-safe cap: switch classroom-safe off in the sidebar to go further" if safe else "3 × the tuned strength"
    return st.slider("Strength", 0.0, float(cap), key=key, step=0.05, help=f"{help_text} The slider ends at {ends}.")


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first token index where two replies differ (``None`` when they are the same)."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def marked(bundle: ec.ModelBundle, reply: ec.Reply, start: int | None) -> str:
    """The reply as Markdown, with the part from token ``start`` on highlighted (where it parts from the other reply)."""
    if start is None:
        return plain(reply.text)
    prefix = bundle.tokenizer.decode(reply.token_ids[:start], skip_special_tokens=True).strip()
    if not reply.text.startswith(prefix):
        return plain(reply.text)
    rest = reply.text[len(prefix) :]
    return highlighted(prefix, rest) if rest.strip() else plain(reply.text)


def stream_into_columns(
    slots: Sequence[st.delta_generator.DeltaGenerator],
    stop_slot: st.delta_generator.DeltaGenerator,
    stream: Iterator[list[ec.Reply]],
    key: str,
) -> list[ec.Reply]:
    """Redraw each slot with its row's reply after every token, with a Stop button meanwhile.

    Stop reruns the page, which ends this run between two tokens (the model's hooks go with it); the replies so far stay in
    the session under ``key`` and ``stopped_replies(key)`` returns them on that next run.
    """
    replies: list[ec.Reply] = []
    with cancellable(key, stop_slot, "Stop"):
        for replies in stream:
            for slot, reply in zip(slots, replies, strict=False):
                slot.markdown(plain(reply.text) + CURSOR)
            st.session_state[f"{key}_partial"] = replies
    st.session_state.pop(f"{key}_partial", None)
    return replies


STOP_ICONS = {"Cancel": ":material/cancel:", "Stop": ":material/stop:"}


@contextmanager
def cancellable(key: str, slot: Slot, label: str = "Cancel") -> Iterator[None]:
    """Run a long action with its own Cancel (or Stop) button in ``slot``. The button reruns the page, which ends the action
    between two steps (the model's hooks and its turn go with it); ``cancelled(key)`` tells the next run, once, so it can
    say so."""
    st.session_state[f"{key}_running"] = True
    slot.button(label, icon=STOP_ICONS[label], key=f"{key}_{label.lower()}")
    yield
    slot.empty()
    st.session_state.pop(f"{key}_running", None)


def cancelled(key: str) -> bool:
    """Whether the last run of ``key`` was cancelled (answered once)."""
    return bool(st.session_state.pop(f"{key}_running", False))


def stopped_replies(key: str) -> list[ec.Reply] | None:
    """The replies so far of a generation that Stop interrupted (once), else ``None``."""
    if not cancelled(key):
        return None
    return st.session_state.pop(f"{key}_partial", [])


@dataclass(frozen=True)
class ReadOut:
    """What the judge and the model's internal reading say about one reply."""

    probabilities: np.ndarray  # [len(LABELS)]
    per_token: np.ndarray  # [n_tokens, E] calibrated internal reading
    mean: np.ndarray  # [E] the reading averaged over the reply

    def level(self, emotion: str) -> float:
        return float(self.mean[EMOTIONS.index(emotion)])

    def probability(self, emotion: str) -> float:
        return float(self.probabilities[LABELS.index(emotion)])


def read_out(replies: Sequence[ec.Reply], reading: EmotionReading) -> list[ReadOut]:
    """The judge's probabilities and the internal reading per token of each reply."""
    probabilities = judge().predict_proba([reply.text for reply in replies])
    outs = []
    for reply, probs in zip(replies, probabilities, strict=True):
        per_token = reading(reply.states).numpy()
        outs.append(ReadOut(probs, per_token, per_token.mean(axis=0)))
    return outs


def shared_scales(outs: Sequence[ReadOut]) -> tuple[tuple[float, float], int]:
    """One y range (every reading of every reply, with a margin) and one x range (the longest reply) for a run's charts."""
    values = np.concatenate([out.per_token.ravel() for out in outs]) if outs else np.zeros(1)
    low, high = float(min(values.min(), 0.0)), float(max(values.max(), 1.0))
    margin = 0.05 * (high - low)
    return (low - margin, high + margin), max(len(out.per_token) for out in outs) - 1 if outs else 1


def show_read_out(
    out: ReadOut, emotion: str, key: str, scales: tuple[tuple[float, float], int] | None = None, narrow: bool = False
) -> None:
    """The judge's emotion probabilities as bars and the internal reading per generated token as a small line (on the
    run's ``shared_scales`` when given; ``narrow`` for three columns side by side)."""
    bars = pd.DataFrame({"label": list(LABELS), "probability": out.probabilities})
    st.altair_chart(live_charts.judge_bars(bars, emotion, narrow), width="stretch", key=f"{key}_bars")
    tokens = pd.DataFrame(out.per_token, columns=list(EMOTIONS)).rename_axis("token").reset_index()
    y_domain, x_max = scales if scales is not None else (None, None)
    st.altair_chart(
        live_charts.reading_line(tokens.melt(id_vars="token", var_name="emotion", value_name="reading"), emotion, y_domain, x_max, narrow),
        width="stretch",
    )


def paired_replies(
    page: str,
    titles: Sequence[str],
    run_key: tuple,
    bundle: ec.ModelBundle,
    reading: EmotionReading,
    emotion: str,
    prompts: Sequence[str],
    edits: Sequence[Intervention],
    settings: ec.GenerationSettings,
) -> tuple[list[ec.Reply], list[ReadOut], int | None] | None:
    """A *Generate* button and a column per title that streams that row of one batched generation (further rows run
    unseen; a title added later shows its row from the kept run).

    The last run is kept in the session under ``<page>_last`` and shown again (with a note when the settings changed
    since); under each reply, the judge's bars and the internal reading per token, on one scale for the whole run. Returns
    every reply of the run, their read-outs and the first token where rows 0 and 1 part, or ``None`` when there is
    nothing to show. Rows 0 and 1 highlight where they part; a third highlights where it parts from row 0.
    """
    key = f"{page}_last"
    buttons = st.container(horizontal=True)
    clicked = buttons.button("Generate", type="primary", icon=":material/play_arrow:", key=f"{page}_generate")
    stop_slot = buttons.empty()
    columns = st.columns(len(titles), gap="medium" if len(titles) > 2 else "large")
    for column, title in zip(columns, titles, strict=True):
        column.markdown(title)
    slots = [column.empty() for column in columns]
    stopped = stopped_replies(key)
    if clicked:
        stream = shared_replies(bundle, prompts, settings, edits, observe=reading.layers)
        replies = stream_into_columns(slots, stop_slot, stream, key)
        st.session_state[key] = (run_key, replies, read_out(replies, reading))
    elif stopped is not None:
        for slot, reply in zip(slots, stopped, strict=False):
            slot.markdown(plain(reply.text) + " *(stopped)*")
        return None
    if key not in st.session_state:
        return None
    stored_key, replies, outs = st.session_state[key]
    if stored_key != run_key:
        st.caption("These replies are from earlier settings; press *Generate* to write them again.")
    start = first_difference(replies[0].token_ids, replies[1].token_ids)
    scales = shared_scales(outs[: len(titles)])
    for i, (slot, column, reply, out) in enumerate(zip(slots, columns, replies, outs, strict=False)):
        slot.markdown(marked(bundle, reply, start if i < 2 else first_difference(replies[0].token_ids, reply.token_ids)))
        with column:
            show_read_out(out, emotion, f"{page}_{('left', 'right', 'third')[i]}", scales, narrow=len(titles) > 2)
    return replies, outs, start
