"""An emotion's circuit: the top heads and neurons inside its most important sublayers.

``importance.py`` measures the sublayers; this module holds the circuit as a value, selects it,
and reads it back from a cache table. It needs no model, so the app can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from emo_core.parts import top_indices

if TYPE_CHECKING:
    import torch

ATTN, MLP = 0, 1  # sublayer kinds along the last axis of importance tensors


@dataclass(frozen=True)
class Circuit:
    """One emotion's circuit: the chosen sublayers and, inside them, the top heads and neurons.

    ``heads`` and ``neurons`` are ``(layer, index, score)`` sorted by score; ``weights`` maps
    ``(kind, layer)`` to the sublayer's importance relative to the circuit's strongest one.
    """

    emotion: str
    heads: tuple[tuple[int, int, float], ...]
    neurons: tuple[tuple[int, int, float], ...]
    weights: dict[tuple[int, int], float]


def select_circuit(
    emotion: str,
    importance: torch.Tensor,
    head_scores: torch.Tensor,
    neuron_scores: torch.Tensor,
    n_sublayers: int = 6,
    heads_per_layer: int = 2,
    neurons_per_layer: int = 16,
) -> Circuit:
    """Top heads and neurons inside the most important attention and MLP sublayers.

    Args:
        importance: ``[n_layers, 2]`` sublayer importance of this emotion.
        head_scores: ``[n_layers, n_heads]`` mean head importance.
        neuron_scores: ``[n_layers, d_mlp]`` mean neuron contribution.
    """
    weights: dict[tuple[int, int], float] = {}
    heads: list[tuple[int, int, float]] = []
    neurons: list[tuple[int, int, float]] = []
    top = float(importance.clamp(min=0).max()) or 1.0
    for kind, scores, per_layer, chosen in ((ATTN, head_scores, heads_per_layer, heads), (MLP, neuron_scores, neurons_per_layer, neurons)):
        for layer in importance[:, kind].argsort(descending=True)[:n_sublayers].tolist():
            if importance[layer, kind] <= 0:
                continue
            weights[(kind, layer)] = float(importance[layer, kind]) / top
            values, _, indices = top_indices(scores[layer : layer + 1], per_layer, per_layer=True)
            chosen.extend((layer, int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0)
    heads.sort(key=lambda item: -item[2])
    neurons.sort(key=lambda item: -item[2])
    return Circuit(emotion, tuple(heads), tuple(neurons), weights)


def circuit_from_table(table: pd.DataFrame, emotion: str) -> Circuit:
    """One emotion's circuit from the cache's ``circuit`` table (see ``pipeline.circuit_table``)."""
    rows = table[table["emotion"] == emotion]
    if rows.empty:
        raise ValueError(f"There is no circuit for '{emotion}'.")
    members = {
        kind: tuple((int(r.layer), int(r.index), float(r.score)) for r in rows[rows["kind"] == kind].itertuples())
        for kind in ("head", "neuron")
    }
    weights = {(ATTN if r.kind == "head" else MLP, int(r.layer)): float(r.sublayer_weight) for r in rows.itertuples()}
    return Circuit(emotion, members["head"], members["neuron"], weights)
