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

STRENGTHS = {"direction": (1.0, 1.5, 2.0), "circuit": (2.0, 3.0, 4.0, 5.0)}  # the candidates; why these: docs/steering.md
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
    second: EmotionJudge | None = None,
) -> pd.DataFrame:
    """Per method (of ``methods``) and emotion, the strength (and, for direction steering, the layer window) with the
    most fluent on-target replies (read so by ``judge`` and, when given, by the ``second`` judge too) among the settings
    whose replies stay fluent (at most ``MAX_DEGENERATE`` degenerate; if none does, every setting competes); ties go to
    the weaker strength.

    Fluent here means the text reads as language (``fluency.degenerate_reason``); whether a reply still answers its
    scenario is measured by ``evaluate`` but not tuned on: on training prompts no candidate kept steered replies on their
    scenarios, so tuning on it chose the weakest steering, which moved almost no reply (docs/steering.md).

    Returns a table of ``method``, ``emotion``, ``layers`` (comma-joined; empty for circuit
    steering, whose circuit fixes its layers), ``strength``, and the training ``accuracy`` and
    ``degenerate`` share it reached.
    """
    bundle = kit.bundle
    chosen = spread(neutral_prompts(skeletons), n_prompts)
    windows = {"direction": layer_windows(bundle.shape.n_layers)}
    grid = [(method, strength, layers) for method in methods for strength in strengths[method] for layers in windows.get(method, [()])]
    rows = [
        Row(
            chat_prompt(bundle, p.user, p.system),
            emotion,
            tuple(kit.interventions(method, emotion, strength, layers)),
            (("method", method), ("strength", str(strength)), ("layers", ",".join(map(str, layers)))),
        )
        for method, strength, layers in grid
        for emotion in EMOTIONS
        for p in chosen
    ]
    scores = score_replies(judge, rows, generate_rows(bundle, rows, progress=progress, desc="tuning"), second)
    scores["strength"] = scores["strength"].astype(float)
    accuracy = scores.groupby(["method", "emotion", "layers", "strength"], as_index=False).agg(
        accuracy=("hit", "mean"), degenerate=("degenerate", "mean")
    )
    accuracy["fluent"] = accuracy["degenerate"] <= MAX_DEGENERATE
    ranked = accuracy.sort_values(["fluent", "accuracy", "strength"], ascending=[False, False, True])  # several keys: a stable lexsort
    best = ranked.groupby(["method", "emotion"], as_index=False).first()
    return best[["method", "emotion", "layers", "strength", "accuracy", "degenerate"]]
