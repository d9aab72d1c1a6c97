"""Chart-ready data frames computed from a model's ``Results`` (no streamlit: unit-testable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emo_core.parts import Component, top_indices
from emo_core.results import Results

if TYPE_CHECKING:
    import torch

MAP_COLUMNS = ["x", "y", "emotion", "valence", "theme", "scenario", "event", "key"]
MAP_TEXT = ["emotion", "valence", "theme", "scenario", "event"]
PART_NAMES = ("attention", "MLP")
SEPARATION_NAMES = {"silhouette": "cluster separation", "probe_accuracy": "classifier accuracy"}  # as the charts and tables say them


def map_frame(results: Results, layer: int, method: str, valences: Sequence[str] = (), themes: Sequence[str] = ()) -> pd.DataFrame:
    """The 2-D map of every prompt at ``layer``, keeping only the given valences and themes (all when empty).

    The repeated texts are categories, so the browser receives each scenario once instead of once per prompt
    (85 KB instead of 615 KB per layer for the default model).
    """
    points = results.map_points(layer, method)
    if valences:
        points = points[points["valence"].isin(valences)]
    if themes:
        points = points[points["theme"].isin(themes)]
    return points[MAP_COLUMNS].astype(dict.fromkeys(MAP_TEXT, "category")).reset_index(drop=True)


def map_extent(results: Results, method: str, margin: float = 0.05) -> tuple[tuple[float, float], tuple[float, float]]:
    """Fixed ``(x, y)`` axis ranges over all layers, so an aligned map does not rescale as the layer changes."""
    maps = results.array(method)  # [L, N, 2]
    low, high = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
    pad = (high - low) * margin
    low, high = (low - pad).tolist(), (high + pad).tolist()
    return (low[0], high[0]), (low[1], high[1])


def cosine_frame(matrix: pd.DataFrame) -> pd.DataFrame:
    """The emotion x emotion similarity (cosine) table in long form: ``emotion``, ``other``, ``similarity``, the word every chart uses."""
    long = matrix.rename_axis(index="emotion", columns="other").stack().rename("similarity").reset_index()
    return long.astype({"similarity": float})


def separation_table(results: Results) -> pd.DataFrame:
    """Per layer, how separable the emotions are: ``layer``, ``cluster separation``, ``classifier accuracy``."""
    return results.separation_by_layer().rename(columns=SEPARATION_NAMES)


def separation_frame(results: Results, current: int) -> pd.DataFrame:
    """``separation_table`` in long form: ``layer``, ``measure``, ``value``, and ``current`` (the chosen layer)."""
    long = separation_table(results).melt(id_vars="layer", var_name="measure", value_name="value")
    return long.assign(current=long["layer"] == current)


def grid_frame(scores: torch.Tensor, column: str) -> pd.DataFrame:
    """A ``[L, W]`` score grid in long form: ``layer``, ``column``, ``score``."""
    n_layers, width = scores.shape
    layer, index = np.repeat(np.arange(n_layers), width), np.tile(np.arange(width), n_layers)
    return pd.DataFrame({"layer": layer, column: index, "score": scores.flatten().float().numpy()})


def top_per_layer(scores: torch.Tensor, k: int) -> pd.DataFrame:
    """The ``k`` largest neuron contributions of every layer: ``layer``, ``neuron``, ``score``, ``rank`` (1 = largest)."""
    values, layers, index = top_indices(scores, k, per_layer=True)
    frame = pd.DataFrame({"layer": layers.numpy(), "neuron": index.numpy(), "score": values.float().numpy()})
    frame["rank"] = frame.groupby("layer").cumcount() + 1
    return frame


def sublayer_frame(importance: torch.Tensor) -> pd.DataFrame:
    """Sublayer importance ``[L, 2]`` in long form: ``layer``, ``part`` (attention / MLP), ``importance``."""
    frame = grid_frame(importance, "part").rename(columns={"score": "importance"})
    frame["part"] = frame["part"].map(dict(enumerate(PART_NAMES)))
    return frame


def position_labels(n_layers: int) -> list[str]:
    """Names of the ``2L`` sublayer outputs in model order: ``Attn 0``, ``MLP 0``, ``Attn 1``, ..."""
    return [f"{part} {layer}" for layer in range(n_layers) for part in ("Attn", "MLP")]


def cross_layer_frame(similarity: torch.Tensor) -> pd.DataFrame:
    """The ``[2L, 2L]`` cross-layer similarity in long form: ``from``, ``to``, ``similarity``."""
    labels = position_labels(similarity.shape[0] // 2)
    frame = grid_frame(similarity, "to").rename(columns={"layer": "from", "score": "similarity"})
    frame["from"] = frame["from"].map(dict(enumerate(labels)))
    frame["to"] = frame["to"].map(dict(enumerate(labels)))
    return frame


def ranked_table(table: pd.DataFrame) -> pd.DataFrame:
    """A top-components table with a 1-based ``rank`` column first."""
    return table.reset_index(drop=True).rename_axis("rank").reset_index().assign(rank=lambda t: t["rank"] + 1)


def selection_by_layer(components: Sequence[Component]) -> pd.DataFrame:
    """A compact view of a selection, one row per layer: ``layer``, ``heads`` (their numbers), ``neurons`` (how many)."""
    layers = sorted({c.layer for c in components})
    return pd.DataFrame(
        {
            "layer": layers,
            "heads": [", ".join(str(c.index) for c in components if c.layer == layer and c.kind == "head") for layer in layers],
            "neurons": [sum(c.layer == layer and c.kind == "neuron" for c in components) for layer in layers],
        }
    )


def moved_frame(positions: np.ndarray, runs: Sequence[str]) -> pd.DataFrame:
    """Runs placed on a map, in order (``x``, ``y``, ``run``, ``order``), with the angle that points each marker along the move."""
    dx, dy = np.diff(positions[:, 0]), np.diff(positions[:, 1])
    angles = [0.0, *np.degrees(np.arctan2(dx, dy)).tolist()]  # Vega turns shapes clockwise from pointing up
    return pd.DataFrame({"x": positions[:, 0], "y": positions[:, 1], "run": list(runs), "order": range(len(runs)), "angle": angles})


def causal_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """A causal ranking (``Results.causal_ranking``) for display: rank, layer, head or neuron, the drops, harm and score."""
    return ranked_table(ranking.drop(columns="eligible").rename(columns={"own": "own drop", "others": "others' drop"}))


RANKING_NAMES = {"causal": "matters when switched off", "paper": "writes the emotion"}  # the Circuit page's two tables
CURVE_SETS = ("top k of the ranking (solid)", "k random parts, same layers (dashed)")


def curve_frame(curves: dict, baseline: str, kind: str, emotion: str) -> pd.DataFrame:
    """One baseline's knockout curves from ``report.json`` (``ablation.curves``) for one emotion and kind, in long form:
    ``k``, ``ranking``, ``set`` (top or random), ``drop`` of the internal reading with its 95% interval ``low``..``high``."""
    rows = []
    for ranking, kinds in curves["reading"][baseline].items():
        if ranking not in RANKING_NAMES:
            continue
        for k, by_emotion in kinds.get(kind, {}).items():
            entry = by_emotion.get(emotion)
            if entry is None:
                continue
            for name, which in zip(CURVE_SETS, ("top", "random"), strict=True):
                low, high = entry[f"{which}_ci95"]
                rows.append((int(k), RANKING_NAMES[ranking], name, entry[f"{which}_drop"], low, high))
    return pd.DataFrame(rows, columns=["k", "ranking", "set", "drop", "low", "high"]).sort_values(["ranking", "set", "k"])
