"""Knockout runs: parts switched off on an emotional baseline, and how far the emotion moves against chance.

A knockout only shows something on a reply that carries the emotion, so every run starts from a baseline
(``baselines.py``). The matched control for a selection is a random set with the same number of heads and
neurons in each of its layers (``parts.matched_random``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from emo_core.baselines import Baseline
from emo_core.forced import ForcedReply, forced_pass
from emo_core.generation import GenerationSettings
from emo_core.interventions import AblationMode, Intervention, on_rows
from emo_core.judge import EmotionJudge, target_probability
from emo_core.models import ModelBundle
from emo_core.parts import Component, NeutralMeans, knockout, matched_random
from emo_core.progress import Progress
from emo_core.reading import EmotionReading
from emo_core.replay import Recording, record, replay
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit

VARIANTS = ("baseline", "knocked_out", "random")  # the replies a knockout is judged by, per scenario


def comparison_rows(
    bundle: ModelBundle,
    kit: SteeringKit | None,
    baseline: Baseline,
    users: Sequence[str],
    emotion: str,
    parts: Sequence[Component],
    mode: AblationMode = "mean",
    means: NeutralMeans | None = None,
    control: bool = True,
    seed: int = 0,
) -> list[Row]:
    """For each user turn in order, the rows a knockout is judged by: the baseline's reply, the same with ``parts`` off,
    and (with ``control``) with a matched random set off, drawn fresh for each turn from one stream seeded by ``seed``.

    The Knockout page's grid and close-up, ``python -m emo_core generate`` and the prepared knockouts all build their
    rows here, so the same scenarios, parts and seed give the same replies everywhere. Rows are tagged ``variant``
    (``VARIANTS``), ``scenario`` (the turn's index) and ``parts`` (the tokens switched off). Without ``parts`` only the
    baseline rows are made.
    """
    rng = random.Random(seed)
    shape = vars(bundle.shape)
    shared = tuple(baseline.edits(kit, emotion)) if baseline.kind == "steered" else ()
    rows = []
    for i, user in enumerate(users):
        prompt = baseline.prompt(bundle, user, emotion)
        variants: list[tuple[str, Sequence[Component]]] = [("baseline", [])]
        if parts:
            variants.append(("knocked_out", parts))
            if control:
                variants.append(("random", matched_random(parts, shape, rng)))
        for variant, off in variants:
            tags = (("variant", variant), ("scenario", str(i)), ("parts", " ".join(c.token for c in off)))
            rows.append(Row(prompt, emotion, (*shared, *knockout(off, mode, means)), tags))
    return rows


@dataclass(frozen=True)
class Meter:
    """The effect meter: emotion readings at the prompt's last token for the baseline, the knockout and its matched control."""

    baseline: torch.Tensor  # [E]
    knocked_out: torch.Tensor  # [E]
    control: torch.Tensor  # [E]
    states: torch.Tensor  # [3, n_extra_layers, d_model]: baseline, knocked-out, control at ``extra_layers``


def effect_meter(
    bundle: ModelBundle,
    reading: EmotionReading,
    baseline: Recording,
    knocked_out: Sequence[Intervention],
    control: Sequence[Intervention],
    extra_layers: Sequence[int] = (),
) -> Meter:
    """The recorded baseline, and the knockout and the control replayed on it as two rows from their lowest layer.

    ``baseline`` is ``record(bundle, prompt, baseline edits)``, kept while only the parts change.
    """
    edits = [*(on_rows(edit, (0,)) for edit in knocked_out), *(on_rows(edit, (1,)) for edit in control)]
    layers = [*reading.layers, *extra_layers]
    states = torch.cat([baseline.last_token(layers)[None], replay(bundle, baseline, edits, 2, layers)])
    readings = reading(states[:, : len(reading.layers)])
    return Meter(readings[0], readings[1], readings[2], states[:, len(reading.layers) :])


@dataclass(frozen=True)
class ChanceCheck:
    """How much a knockout lowers the target emotion, next to matched random knockouts (one value per random draw).

    Drops are baseline minus knocked-out, averaged over the prompts: positive means the emotion fell.
    """

    emotion: str
    n_prompts: int
    reading_drop: float
    random_reading_drops: tuple[float, ...]
    judge_drop: float | None = None
    random_judge_drops: tuple[float, ...] | None = None

    @property
    def reading_rank(self) -> int:
        """How many random draws lowered the reading at least as much as the selection did."""
        return sum(drop >= self.reading_drop for drop in self.random_reading_drops)


def chance_check(
    bundle: ModelBundle,
    reading: EmotionReading,
    results: Results,
    prompts: Sequence[tuple[str, Sequence[Intervention]]],
    emotion: str,
    selection: Sequence[Component],
    mode: AblationMode = "zero",
    n_draws: int = 20,
    seed: int = 0,
    judge: EmotionJudge | None = None,
    settings: GenerationSettings = SCORING_SETTINGS,
    progress: Progress | None = None,
) -> ChanceCheck:
    """The selection's knockout and ``n_draws`` matched random knockouts on every prompt.

    Args:
        prompts: ``(templated prompt, baseline edits)`` pairs, e.g. twelve evaluation scenarios.
        judge: also generate every reply and compare the judge's probability of ``emotion`` (slower).
    """
    rng = random.Random(seed)
    sets = [list(selection)] + [matched_random(selection, results.shape, rng) for _ in range(n_draws)]
    target = EMOTIONS.index(emotion)
    conditions = len(sets) + 1  # the baseline, then every knockout
    drops = np.zeros((len(prompts), len(sets)))
    steps = len(prompts) * (2 if judge is not None else 1)
    means = results.neutral_means
    knockouts = [edit for s, parts in enumerate(sets) for edit in knockout(parts, mode, means, rows=(s,))]
    for p, (prompt, shared) in enumerate(prompts):
        recorded = record(bundle, prompt, shared)
        before = reading(recorded.last_token(reading.layers))[target]
        after = reading(replay(bundle, recorded, knockouts, len(sets), reading.layers))[:, target]
        drops[p] = (before - after).numpy()
        if progress is not None:
            progress(p + 1, steps)
    judged: np.ndarray | None = None
    if judge is not None:
        rows = [Row(prompt, emotion, (*shared, *knockout(parts, mode, means))) for prompt, shared in prompts for parts in [[], *sets]]
        done = len(prompts)

        def report(finished: int, total: int) -> None:
            if progress is not None:
                progress(done + round(finished / total * len(prompts)), steps)

        replies = generate_rows(bundle, rows, settings, progress=report, desc="chance check")
        probs = target_probability(judge.predict_proba([reply.text for reply in replies]), emotion).reshape(len(prompts), conditions)
        judged = probs[:, :1] - probs[:, 1:]
    means = drops.mean(axis=0)
    return ChanceCheck(
        emotion,
        len(prompts),
        float(means[0]),
        tuple(float(x) for x in means[1:]),
        None if judged is None else float(judged.mean(axis=0)[0]),
        None if judged is None else tuple(float(x) for x in judged.mean(axis=0)[1:]),
    )


@dataclass(frozen=True)
class Tally:
    """What a batch of ``comparison_rows`` shows in the words, counted per scenario.

    A baseline reply *carries* the emotion when the judge's top class is the emotion and it is not degenerate; a knocked-out
    or random reply *loses* it when the judge's top class is no longer the emotion. Losses are counted only where the
    baseline carried the emotion (a knockout cannot remove what was not there).
    """

    scenarios: int
    carried: int  # baseline replies that carry the emotion
    removed: int  # of those, knocked-out replies that lost it
    random_removed: int  # of those, random-control replies that lost it
    degenerate: int  # knocked-out replies that are not language (of every scenario)
    random_degenerate: int
    baseline_degenerate: int = 0

    @property
    def removed_share(self) -> float:
        return self.removed / self.carried if self.carried else 0.0

    @property
    def random_share(self) -> float:
        return self.random_removed / self.carried if self.carried else 0.0

    @property
    def p_value(self) -> float:
        """One-sided Fisher exact test that the knockout removes the emotion more often than the random sets do (1.0 when
        no baseline reply carried it)."""
        from scipy.stats import fisher_exact

        if not self.carried:
            return 1.0
        table = [[self.removed, self.carried - self.removed], [self.random_removed, self.carried - self.random_removed]]
        return float(fisher_exact(table, alternative="greater").pvalue)


def tally(scores: pd.DataFrame) -> Tally:
    """Count a scored batch of ``comparison_rows`` (``scoring.score_replies``: ``variant``, ``scenario``, ``predicted``,
    ``emotion``, ``degenerate``). Scenarios without a random row count as if the random set removed nothing."""
    by = {variant: group.set_index("scenario") for variant, group in scores.groupby("variant")}
    base = by["baseline"]
    carried = base.index[(base["predicted"] == base["emotion"]) & ~base["degenerate"]]

    def lost(variant: str) -> int:
        if variant not in by:
            return 0
        rows = by[variant].loc[by[variant].index.intersection(carried)]
        return int((rows["predicted"] != rows["emotion"]).sum())

    def broken(variant: str) -> int:
        return int(by[variant]["degenerate"].sum()) if variant in by else 0

    return Tally(len(base), len(carried), lost("knocked_out"), lost("random"), broken("knocked_out"), broken("random"), broken("baseline"))


def reply_meter(
    bundle: ModelBundle,
    reading: EmotionReading,
    prompt: str,
    reply_tokens: Sequence[int],
    shared: Sequence[Intervention],
    knocked_out: Sequence[Intervention],
    control: Sequence[Intervention],
) -> torch.Tensor:
    """``[3, E]`` emotion readings averaged over the baseline's reply, teacher-forced (its tokens fed as written): the
    baseline, with the knockout, with the control. Parts that act while the reply is written show here; the prompt-level
    ``effect_meter`` reads only the prompt's last token, before any of them has acted on a reply token."""
    rows = [ForcedReply(prompt, tuple(reply_tokens), tuple(extra)) for extra in ((), knocked_out, control)]
    states, _, _ = forced_pass(bundle, rows, reading.layers, shared)
    return reading(states)
