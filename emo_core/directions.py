"""Emotion directions: the paper's within-group contrast, and the similarity structure they form.

Within each (skeleton, valence) group the mean over the six emotions is subtracted, which cancels
the scenario's content; what remains, averaged over groups, is each emotion's direction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import pandas as pd
import torch

from emo_core.scenarios import EMOTIONS, PromptSpec


def complete_groups(prompts: Sequence[PromptSpec], emotions: Sequence[str] = EMOTIONS) -> torch.Tensor:
    """Prompt indices as ``[n_groups, n_emotions]``, one row per (skeleton, valence) with every emotion."""
    index: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for i, p in enumerate(prompts):
        index[(p.skeleton_id, p.valence)][p.emotion or ""] = i
    rows = [[group[e] for e in emotions] for group in index.values() if all(e in group for e in emotions)]
    if not rows:
        raise ValueError("no (skeleton, valence) group has a prompt for every emotion")
    return torch.tensor(rows)


def mean_differences(acts: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean over groups of each emotion minus its group's mean: ``[n_emotions, n_layers, width]``.

    Args:
        acts: ``[n_prompts, n_layers, width]`` activations.
        groups: ``[n_groups, n_emotions]`` prompt indices from ``complete_groups``.
    """
    grouped = acts[groups]  # [group, emotion, layer, width]
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return centred.mean(dim=0)


def emotion_directions(acts: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Unit emotion directions per layer: ``[n_emotions, n_layers, width]``."""
    diffs = mean_differences(acts, groups)
    diffs = diffs - diffs.mean(dim=0, keepdim=True)
    return diffs / (diffs.norm(dim=-1, keepdim=True) + 1e-12)


def between_emotion_cosines(directions: torch.Tensor) -> torch.Tensor:
    """Cosine of every pair of emotion directions at every layer: ``[n_layers, n_emotions, n_emotions]``."""
    per_layer = directions.transpose(0, 1)  # [layer, emotion, width]
    return per_layer @ per_layer.transpose(1, 2)


def cross_layer_similarity(mid: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Per emotion, cosines between its directions at all residual positions, interleaved
    attention-then-MLP by layer (Attn0, MLP0, Attn1, ...): ``[n_emotions, 2 n_layers, 2 n_layers]``."""
    interleaved = torch.stack([mid, post], dim=2).flatten(1, 2)  # [emotion, 2 layer, width]
    return interleaved @ interleaved.transpose(1, 2)


def nearest_emotions(cosines: torch.Tensor, emotions: Sequence[str] = EMOTIONS) -> pd.DataFrame:
    """Each emotion's most similar other emotion at every layer: ``layer``, ``emotion``, ``nearest``, ``cosine``."""
    masked = cosines.clone()
    eye = torch.arange(len(emotions))
    masked[:, eye, eye] = -torch.inf
    values, best = masked.max(dim=-1)  # [layer, emotion]
    rows = [
        {"layer": layer, "emotion": emotion, "nearest": emotions[int(best[layer, e])], "cosine": float(values[layer, e])}
        for layer in range(cosines.shape[0])
        for e, emotion in enumerate(emotions)
    ]
    return pd.DataFrame(rows)
