"""Steering strengths chosen per emotion on training scenarios only (never the evaluation split)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from emo_core.activations import Progress
from emo_core.generation import chat_prompt
from emo_core.judge import EmotionJudge
from emo_core.scenarios import EMOTIONS, PromptSpec, Skeleton, neutral_prompts
from emo_core.scoring import Row, generate_rows, score_replies
from emo_core.steering import SteeringKit, middle_layers

STRENGTHS = {"direction": (1.0, 2.0, 3.0, 4.0), "circuit": (2.0, 4.0, 8.0, 16.0)}
TUNING_PROMPTS = 12


def tuning_prompts(skeletons: Sequence[Skeleton], n: int = TUNING_PROMPTS) -> list[PromptSpec]:
    """``n`` emotion-free prompts spread over the training skeletons' themes and valences."""
    prompts = neutral_prompts(skeletons)
    return prompts[:: max(1, len(prompts) // n)][:n]


def tune_steering(
    kit: SteeringKit,
    judge: EmotionJudge,
    skeletons: Sequence[Skeleton],
    strengths: dict[str, Sequence[float]] = STRENGTHS,
    n_prompts: int = TUNING_PROMPTS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per method and emotion, the strength with the most fluent on-target replies (ties: the weaker).

    Returns a table of ``method``, ``emotion``, ``layers`` (comma-joined), ``strength`` and the
    training ``accuracy`` it reached.
    """
    bundle = kit.bundle
    texts = [chat_prompt(bundle, p.user, p.system) for p in tuning_prompts(skeletons, n_prompts)]
    layers = ",".join(map(str, middle_layers(bundle.shape.n_layers)))
    grid = [(method, strength) for method, values in strengths.items() for strength in values]
    rows = [
        Row(text, emotion, tuple(kit.interventions(method, emotion, strength)), (("method", method), ("strength", str(strength))))
        for method, strength in grid
        for emotion in EMOTIONS
        for text in texts
    ]
    scores = score_replies(judge, rows, generate_rows(bundle, rows, progress=progress, desc="tuning"))
    scores["strength"] = scores["strength"].astype(float)
    accuracy = scores.groupby(["method", "emotion", "strength"], as_index=False)["hit"].mean()
    best = accuracy.sort_values(["hit", "strength"], ascending=[False, True]).groupby(["method", "emotion"], as_index=False).first()
    best["layers"] = [layers if method == "direction" else "" for method in best["method"]]
    return best.rename(columns={"hit": "accuracy"})[["method", "emotion", "layers", "strength", "accuracy"]]
