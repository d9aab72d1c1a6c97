"""Sentences that say, in plain words, what the current chart shows (computed, so they change with the view)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emo_core.circuit import ATTN
from emo_core.parts import Component, circuit_components, count, describe
from emo_core.results import Results


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
    """What the emotion's circuit holds and where it matters most, and how it relates to the ranked tables (which ask another question)."""
    circuit = results.circuit(emotion)
    members = circuit_components(circuit)
    if not members:
        return f"The **{emotion}** circuit is empty for this model: no part pushed the model toward {emotion} in its key sublayers."
    kind, layer = max(circuit.weights, key=circuit.weights.get)
    inside = [f"strongest {c.kind} is **{c.label}**" for c in (_first(members, "head"), _first(members, "neuron")) if c is not None]
    table_head = results.top_heads(emotion, 1).iloc[0]
    table_neuron = results.top_neurons(emotion, 1).iloc[0]
    tops = [
        Component("head", int(table_head["layer"]), int(table_head["head"])),
        Component("neuron", int(table_neuron["layer"]), int(table_neuron["neuron"])),
    ]
    outside = [c.label for c in tops if c not in members]
    tables = (
        f"The tables below rank every part of the model by another question, how strongly it reacts when the model is asked "
        f"for {emotion}; their top entries ({' and '.join(outside)}) are not in the circuit."
        if outside
        else f"The tables below rank every part by how strongly it reacts when the model is asked for {emotion}; "
        "their top entries are in the circuit too."
    )
    return (
        f"The **{emotion} circuit** is {describe(members)}, where adding {emotion} changes the model most (most of all at "
        f"the {'attention' if kind == ATTN else 'MLP'} of layer {layer}). Its {', and its '.join(inside)}. {tables}"
    )


def _first(members: list[Component], kind: str) -> Component | None:
    return next((c for c in members if c.kind == kind), None)


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


def rankings_sentence(emotion: str) -> str:
    """Why the two rankings of the Circuit page differ."""
    return (
        f"The paper ranks each part by what it **writes**: how strongly it pushes the model's state toward {emotion} at the "
        f"end of a prompt asking for {emotion}. A knockout asks another question: how much {emotion} **fades from the "
        "model while it replies** when the part is switched off. In a small model the two differ: a part can write the "
        "emotion that later layers overwrite or ignore, while another writes little yet carries the emotion along so that "
        "removing it matters. The Knockout page tests either list against random parts."
    )


def curves_sentence(curves: dict, baseline: str, kind: str, emotion: str) -> str:
    """The fewest top parts of the knockout ranking that lower the emotion clearly more than chance, and what the judge saw."""
    points = {
        int(k): entry[emotion] for k, entry in curves["reading"][baseline].get("causal", {}).get(kind, {}).items() if emotion in entry
    }
    if not points:
        return f"The evaluation measured no {kind} knockouts on this baseline."
    passing = [k for k, entry in sorted(points.items()) if entry["three_times_random"]]
    k = passing[0] if passing else max(points)
    entry = points[k]
    low, high = entry["top_ci95"]
    verdict = "at least 3 times as much as" if passing else "not clearly more than 3 times"
    sentence = (
        f"Switching off the top {count(k, kind)} of the *matters when switched off* ranking lowered the {emotion} reading by "
        f"{entry['top_drop']:.2f} (95% interval {low:.2f} to {high:.2f}), {verdict} {count(k, 'random ' + kind)} from the same "
        f"layers ({entry['random_drop']:.2f}), on {entry['n_top']} evaluation replies."
    )
    judged = curves.get("judged", {})
    if judged.get("baseline") == baseline:
        for k_judged, by_emotion in judged.get(kind, {}).items():
            if emotion in by_emotion:
                words = by_emotion[emotion]
                sentence += (
                    f" In the words: over {words['n_top']} generated replies, the top {count(int(k_judged), kind)} lowered the "
                    f"judge's probability of {emotion} by {words['top_drop']:.2f}, {count(int(k_judged), 'random ' + kind)} by "
                    f"{words['random_drop']:.2f}."
                )
    return sentence
