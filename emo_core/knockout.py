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
import torch

from emo_core.generation import GenerationSettings
from emo_core.interventions import AblationMode, Intervention, on_rows
from emo_core.judge import EmotionJudge, target_probability
from emo_core.models import ModelBundle
from emo_core.parts import Component, knockout, matched_random
from emo_core.progress import Progress
from emo_core.reading import EmotionReading
from emo_core.replay import Recording, record, replay
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows


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
