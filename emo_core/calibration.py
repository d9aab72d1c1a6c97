"""Calibrating the internal emotion reading on training prompts: 0 is the plain model, 1 a reply steered toward the emotion."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from emo_core.activations import Progress
from emo_core.generation import chat_prompt
from emo_core.reading import EmotionReading, calibration, emotion_contrast, reading_layers, unit_directions
from emo_core.scenarios import EMOTIONS, PromptSpec
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit, tuned_settings, tuned_steering


def calibrate_reading(
    kit: SteeringKit, tuned: pd.DataFrame, prompts: Sequence[PromptSpec], progress: Progress | None = None
) -> EmotionReading:
    """The reading over ``kit``'s expression vectors, calibrated on plain replies and tuned direction-steered replies to ``prompts``.

    Args:
        tuned: the tuning table (``tune_steering``): the direction strength and layers of each emotion.
        prompts: emotion-free training prompts.
    """
    bundle = kit.bundle
    layers = reading_layers(bundle.shape.n_layers)
    units = unit_directions(kit.resid, layers)
    texts = [chat_prompt(bundle, p.user, p.system) for p in prompts]
    rows = [Row(text, "neutral") for text in texts]
    for emotion in EMOTIONS:
        edits = tuple(tuned_steering(kit, tuned_settings(tuned, "direction", emotion), "direction", emotion))
        rows.extend(Row(text, emotion, edits) for text in texts)
    replies = generate_rows(bundle, rows, SCORING_SETTINGS, progress=progress, desc="reading", observe=layers)
    contrasts = torch.stack([emotion_contrast(reply.states, units).mean(dim=0) for reply in replies])  # [rows, E]
    n = len(texts)
    zero, one = calibration(contrasts[:n], {emotion: contrasts[(e + 1) * n : (e + 2) * n] for e, emotion in enumerate(EMOTIONS)})
    return EmotionReading(layers, units, zero, one)
