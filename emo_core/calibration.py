"""Calibrating the internal emotion reading on training prompts: 0 is the plain model, 1 a reply steered toward the emotion."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emo_core.baselines import Baseline, baseline_rows
from emo_core.progress import Progress
from emo_core.reading import EmotionReading, calibration, emotion_contrast, reading_layers, unit_directions
from emo_core.scenarios import EMOTIONS, PromptSpec
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit


def calibrate_reading(kit: SteeringKit, prompts: Sequence[PromptSpec], progress: Progress | None = None) -> EmotionReading:
    """The reading over ``kit``'s expression vectors, calibrated on plain replies and on replies to ``prompts`` (emotion-free
    training prompts) steered toward each emotion with the kit's tuned direction steering."""
    bundle = kit.bundle
    layers = reading_layers(bundle.shape.n_layers)
    units = unit_directions(kit.resid, layers)
    plain = Baseline("plain")
    rows = [Row(plain.prompt(bundle, p.user), "neutral") for p in prompts]
    rows += baseline_rows(Baseline("steered", "direction"), kit, prompts)  # emotion by emotion, after the plain rows
    replies = generate_rows(bundle, rows, SCORING_SETTINGS, progress=progress, desc="reading", observe=layers)
    contrasts = torch.stack([emotion_contrast(reply.states, units).mean(dim=0) for reply in replies])  # [rows, E]
    n = len(prompts)
    zero, one = calibration(contrasts[:n], {emotion: contrasts[(e + 1) * n : (e + 2) * n] for e, emotion in enumerate(EMOTIONS)})
    return EmotionReading(layers, units, zero, one)
