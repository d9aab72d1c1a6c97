"""Steering strengths chosen per emotion on training scenarios only (never the evaluation split)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from emo_core.generation import chat_prompt
from emo_core.judge import EmotionJudge
from emo_core.progress import Progress
from emo_core.scenarios import EMOTIONS, Skeleton, neutral_prompts, spread
from emo_core.scoring import Row, generate_rows, score_replies
from emo_core.steering import METHODS, SteeringKit

STRENGTHS = {"direction": (1.0, 2.0), "circuit": (3.0, 4.0, 4.5, 5.0)}  # the candidates; why these: docs/steering.md
TUNING_PROMPTS = 12
MAX_DEGENERATE = 0.05  # a setting is fluent when at most this share of its replies is degenerate


def layer_windows(n_layers: int) -> list[tuple[int, ...]]:
    """Three candidate layer ranges for direction steering, each a third of the network: early-middle,
    middle (the paper's choice) and late-middle."""
    width = n_layers // 3
    windows = (tuple(range(start, min(start + width + 1, n_layers))) for start in (n_layers // 6, n_layers // 3, n_layers // 2))
    return list(dict.fromkeys(windows))


def tune_steering(
    kit: SteeringKit,
    judge: EmotionJudge,
    skeletons: Sequence[Skeleton],
    methods: Sequence[str] = METHODS,
    strengths: Mapping[str, Sequence[float]] = STRENGTHS,
    n_prompts: int = TUNING_PROMPTS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per method (of ``methods``) and emotion, the strength (and, for direction steering, the layer window) with the
    most fluent on-target replies among the settings whose replies stay fluent (at most
    ``MAX_DEGENERATE`` degenerate; if none does, every setting competes); ties go to the weaker strength.

    Returns a table of ``method``, ``emotion``, ``layers`` (comma-joined; empty for circuit
    steering, whose circuit fixes its layers), ``strength``, and the training ``accuracy`` and
    ``degenerate`` share it reached.
    """
    bundle = kit.bundle
    texts = [chat_prompt(bundle, p.user, p.system) for p in spread(neutral_prompts(skeletons), n_prompts)]
    windows = {"direction": layer_windows(bundle.shape.n_layers)}
    grid = [(method, strength, layers) for method in methods for strength in strengths[method] for layers in windows.get(method, [()])]
    rows = [
        Row(
            text,
            emotion,
            tuple(kit.interventions(method, emotion, strength, layers)),
            (("method", method), ("strength", str(strength)), ("layers", ",".join(map(str, layers)))),
        )
        for method, strength, layers in grid
        for emotion in EMOTIONS
        for text in texts
    ]
    scores = score_replies(judge, rows, generate_rows(bundle, rows, progress=progress, desc="tuning"))
    scores["strength"] = scores["strength"].astype(float)
    accuracy = scores.groupby(["method", "emotion", "layers", "strength"], as_index=False).agg(
        accuracy=("hit", "mean"), degenerate=("degenerate", "mean")
    )
    accuracy["fluent"] = accuracy["degenerate"] <= MAX_DEGENERATE
    ranked = accuracy.sort_values(["fluent", "accuracy", "strength"], ascending=[False, False, True], kind="stable")
    best = ranked.groupby(["method", "emotion"], as_index=False).first()
    return best[["method", "emotion", "layers", "strength", "accuracy", "degenerate"]]
