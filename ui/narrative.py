"""Sentences that say, in plain words, what the current chart shows (computed, so they change with the view)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emo_core.results import Results
from ui.selection import Component


def closeness_sentence(cosines: pd.DataFrame, layer: int, emotion: str) -> str:
    """Which emotion is most and least like ``emotion`` at this layer, and the most alike pair overall."""
    row = cosines.loc[emotion].drop(emotion)
    upper = pd.DataFrame(np.triu(np.ones(cosines.shape, dtype=bool), k=1), index=cosines.index, columns=cosines.columns)
    pairs = cosines.where(upper).stack()
    first, second = pairs.idxmax()
    return (
        f"At layer {layer}, **{emotion}** is closest to **{row.idxmax()}** (similarity {row.max():.2f}) "
        f"and furthest from **{row.idxmin()}** ({row.min():.2f}). "
        f"The most alike pair here is **{first}** and **{second}** ({pairs.max():.2f})."
    )


def best_layer(results: Results) -> int:
    """The layer where the emotion clusters separate best (highest silhouette)."""
    separation = results.separation_by_layer()
    return int(separation.loc[separation["silhouette"].idxmax(), "layer"])


def separation_sentence(results: Results, layer: int) -> str:
    """How separated the clusters are at ``layer`` compared with the best layer, and how well a classifier does."""
    separation = results.separation_by_layer().set_index("layer")
    best = best_layer(results)
    here, top = separation.loc[layer], separation.loc[best]
    chance = 1 / len(results.emotions)
    where = "the clusters are at their clearest here" if layer == best else f"they are clearest at layer {best} ({top['silhouette']:.2f})"
    return (
        f"At layer {layer} the cluster separation score is {here['silhouette']:.2f} (1 = perfectly apart, 0 = mixed); {where}. "
        f"A simple classifier reading this layer names the requested emotion {here['probe_accuracy']:.0%} of the time "
        f"(guessing would give {chance:.0%})."
    )


def circuit_sentence(results: Results, emotion: str) -> str:
    """The strongest head, the strongest neuron and the most important sublayers of ``emotion``."""
    head = results.top_heads(emotion, 1).iloc[0]
    neuron = results.top_neurons(emotion, 1).iloc[0]
    importance = results.sublayer_importance(emotion)
    attn_layer, mlp_layer = int(importance[:, 0].argmax()), int(importance[:, 1].argmax())
    strongest_head = Component("head", int(head["layer"]), int(head["head"])).label
    strongest_neuron = Component("neuron", int(neuron["layer"]), int(neuron["neuron"])).label
    return (
        f"For **{emotion}**, the strongest attention head is **{strongest_head}** and the strongest neuron is "
        f"**{strongest_neuron}**. Injecting {emotion} matters most through the attention of layer {attn_layer} "
        f"and the MLP of layer {mlp_layer}."
    )


def persistence_sentence(similarity: np.ndarray, emotion: str, threshold: float = 0.5) -> str:
    """From which sublayer on the emotion's direction stays similar to the last one (the representation has settled)."""
    last = similarity[-1]
    settled = len(last)
    while settled > 0 and last[settled - 1] >= threshold:
        settled -= 1
    part = "Attn" if settled % 2 == 0 else "MLP"
    return (
        f"The **{emotion}** direction after {part} {settled // 2} already points nearly the same way as at the end "
        f"(similarity at least {threshold:.1f}) and stays that way: from there on the model keeps one stable idea of {emotion}."
    )
