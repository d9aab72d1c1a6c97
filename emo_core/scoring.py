"""Generate steered or ablated replies in batches and score them with the judge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emo_core.fluency import degenerate_reasons
from emo_core.generation import GenerationSettings, Reply, generate, on_rows
from emo_core.interventions import Intervention
from emo_core.judge import LABELS, EmotionJudge, predicted_labels
from emo_core.models import ModelBundle
from emo_core.progress import Progress

SCORING_SETTINGS = GenerationSettings(max_new_tokens=32, repetition_penalty=1.05, no_repeat_ngram_size=3)
# Rows per generated batch: a decode step's cost grows far slower than its rows up to about this many, and more made the
# knockouts' whole-prompt prefill slower again (bench/bench_batches.py; figures in bench/README.md).
ROWS_PER_BATCH = 144


@dataclass(frozen=True)
class Row:
    """One reply to generate: a templated prompt, the emotion it should show, and what to apply; with its ``scenario``
    (the user's message), the fluency check also asks whether the reply answers it."""

    prompt: str
    emotion: str
    interventions: tuple[Intervention, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # extra columns for the score table, e.g. (("valence", "positive"),)
    scenario: str = ""


def batch_edits(rows: Sequence[Row]) -> list[Intervention]:
    """Every row's interventions limited to that row, for one batch of ``rows`` in their order."""
    return [on_rows(edit, (i,)) for i, row in enumerate(rows) for edit in row.interventions]


def generate_rows(
    bundle: ModelBundle,
    rows: Sequence[Row],
    settings: GenerationSettings = SCORING_SETTINGS,
    batch_size: int = ROWS_PER_BATCH,
    progress: Progress | None = None,
    desc: str = "replies",
    observe: Sequence[int] = (),
) -> list[Reply]:
    """Replies to every row, batched; each row's interventions touch only that row.

    With ``observe`` (layers), each reply also carries the ``resid_post`` states at those layers that
    produced its tokens (``Reply.states``, ``[n_tokens, k, d_model]``; one state for an empty reply).

    With greedy decoding, rows that share a prompt and have no interventions get one reply between
    them (the unsteered reply is the same whatever emotion a row is scored against). Rows are batched
    by prompt, so a prompt steered several ways runs its prefill once (``generation.generate``).
    """
    plain: dict[str, int] = {}
    unique: list[Row] = []
    source: list[int] = []
    for row in rows:
        if row.interventions or settings.do_sample:
            source.append(len(unique))
            unique.append(row)
        else:
            if row.prompt not in plain:
                plain[row.prompt] = len(unique)
                unique.append(row)
            source.append(plain[row.prompt])
    order = sorted(range(len(unique)), key=lambda i: unique[i].prompt)  # rows of one prompt share batches, and so its prefill
    replies: dict[int, Reply] = {}
    bar = tqdm(total=len(unique), desc=desc, unit="reply", disable=progress is not None)
    for start in range(0, len(unique), batch_size):
        chunk = order[start : start + batch_size]
        edits = batch_edits([unique[u] for u in chunk])
        replies.update(zip(chunk, generate(bundle, [unique[u].prompt for u in chunk], settings, edits, observe), strict=True))
        bar.update(len(chunk))
        if progress is not None:
            progress(len(replies), len(unique))
    bar.close()
    return [replies[i] for i in source]


def score_replies(judge: EmotionJudge, rows: Sequence[Row], replies: Sequence[Reply], second: EmotionJudge | None = None) -> pd.DataFrame:
    """One row per reply: the judge's label and target probability, whether it is fluent, and why not.

    ``hit`` counts a reply as on target only when it is also not degenerate, so token soup that happens to contain an
    emotion word is never rewarded. With a ``second`` judge, its label and probability come as ``predicted_2`` and
    ``p_target_2``, ``hit_1`` and ``hit_2`` say each judge's verdict on a fluent reply, ``agree`` whether the two
    labels agree, and ``hit`` needs both judges.
    """
    texts = [reply.text for reply in replies]
    targets = [LABELS.index(row.emotion) for row in rows]
    probs = judge.predict_proba(texts)
    reasons = degenerate_reasons(texts, [row.scenario for row in rows])
    table = pd.DataFrame(
        {
            "emotion": [row.emotion for row in rows],
            "predicted": predicted_labels(probs),
            "p_target": probs[np.arange(len(rows)), targets] if rows else [],
            "degenerate": [reason is not None for reason in reasons],
            "reason": [reason or "" for reason in reasons],
            "reply": texts,
        }
    )
    if any(row.scenario for row in rows):
        table["scenario"] = [row.scenario for row in rows]
    table["hit"] = (table["predicted"] == table["emotion"]) & ~table["degenerate"]
    if second is not None:
        probs_2 = second.predict_proba(texts)
        table["predicted_2"] = predicted_labels(probs_2)
        table["p_target_2"] = probs_2[np.arange(len(rows)), targets] if rows else []
        table["hit_1"] = table["hit"]
        table["hit_2"] = (table["predicted_2"] == table["emotion"]) & ~table["degenerate"]
        table["agree"] = table["predicted"] == table["predicted_2"]
        table["hit"] = table["hit_1"] & table["hit_2"]
    for name in {name for row in rows for name, _ in row.tags}:
        table[name] = [dict(row.tags).get(name) for row in rows]
    return table
