"""Causal rankings from the stored effects: a score that asks for specificity and harmlessness, and the ranked table.

``attribution.py`` estimates, for every head and neuron, how far switching it off lowers each emotion's
reading (on a baseline reply expressing that emotion) and how far it raises the language-model loss on
neutral prompts. This module turns those estimates into a ranking with the tensors' own methods, so
importing it does not import torch and the app can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emo_core.parts import Kind

if TYPE_CHECKING:
    import torch

HARM_BOUND = 0.01  # a ranked part may raise the neutral-prompt loss by at most 1% (estimated); four of them stay under 5%
OTHERS_WEIGHT = 1.5  # a part must lower its emotion 1.5 times as much as it lowers the other emotions on average to score above 0
HARM_BASE = "causal.harm.base"  # the cache's name for the neutral-prompt loss with nothing switched off, ``[1]``


def effect_name(baseline: str, kind: Kind, mode: str) -> str:
    """The cache's name for the ``[E, L, units]`` estimated drops of each emotion's reading on ``baseline``
    (stored tensor names spell the kind in the plural: ``causal.steered.neurons.mean``)."""
    return f"causal.{baseline}.{kind}s.{mode}"


def harm_name(kind: Kind, mode: str) -> str:
    """The cache's name for the ``[L, units]`` estimated rise of the neutral-prompt loss per part (``causal.harm.heads.zero``)."""
    return f"causal.harm.{kind}s.{mode}"


def others_mean(own: torch.Tensor) -> torch.Tensor:
    """``[E, L, units]``: for each emotion, the mean effect on the *other* emotions' readings (each on its own baseline)."""
    n = own.shape[0]
    return (own.sum(dim=0, keepdim=True) - own) / max(n - 1, 1)


def harmful(harm: torch.Tensor, base_loss: float) -> torch.Tensor:
    """``[L, units]`` parts whose estimated change of the neutral loss exceeds ``HARM_BOUND`` of it, either way.

    A large first-order change in either direction marks a part the model cannot do without (a
    knockout of such a part is far from linear), so both directions count.
    """
    return harm.abs() > HARM_BOUND * base_loss


def causal_scores(own: torch.Tensor, harm: torch.Tensor, base_loss: float) -> torch.Tensor:
    """Ranking scores ``[E, L, units]``: own drop minus ``OTHERS_WEIGHT`` x the others' mean drop; harmful parts get ``-inf``.

    Args:
        own: ``[E, L, units]`` estimated drop of each emotion's reading (positive = it falls) on its baseline.
        harm: ``[L, units]`` estimated rise of the neutral-prompt loss (nats per token).
        base_loss: the neutral-prompt loss with nothing switched off.
    """
    score = own - OTHERS_WEIGHT * others_mean(own).clamp(min=0)
    return score.masked_fill(harmful(harm, base_loss)[None], float("-inf"))


def stored_scores(tensors: Mapping[str, torch.Tensor], baseline: str, kind: Kind, mode: str) -> torch.Tensor:
    """``causal_scores`` from a cache's (or a build's own) tensors; ``KeyError`` when they lack this ranking."""
    return causal_scores(tensors[effect_name(baseline, kind, mode)], tensors[harm_name(kind, mode)], float(tensors[HARM_BASE][0]))


def ranking_table(own: torch.Tensor, others: torch.Tensor, harm: torch.Tensor, score: torch.Tensor, kind: Kind) -> pd.DataFrame:
    """One emotion's parts ranked by score: ``layer``, ``kind`` (``head`` or ``neuron``: the index), ``own``, ``others``,
    ``harm``, ``score``, ``eligible``.

    All arguments are ``[L, units]``; parts that fail the harm bound come last with ``eligible`` False.
    """
    n_layers, width = own.shape
    table = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(n_layers), width),
            kind: np.tile(np.arange(width), n_layers),
            "own": own.flatten().numpy(),
            "others": others.flatten().numpy(),
            "harm": harm.flatten().numpy(),
            "score": score.flatten().numpy(),
        }
    )
    table["eligible"] = score.flatten().isfinite().numpy()
    ranked = table.sort_values(["eligible", "score", "own"], ascending=[False, False, False])  # several keys: a stable lexsort
    return ranked.reset_index(drop=True)


def part_profile(
    own: torch.Tensor,
    harm: torch.Tensor,
    base_loss: float,
    paper: torch.Tensor,
    emotions: tuple[str, ...],
    kind: Kind,
    layer: int,
    index: int,
) -> pd.DataFrame:
    """One part's row in every emotion's two rankings: ``emotion``, ``own`` (drop of that emotion's reading when it is switched
    off), ``others`` (mean drop of the other emotions'), ``score``, ``rank`` (its place in the causal ranking, 1 = first;
    0 when the harm bound leaves it out) and ``paper_rank`` (its place by the paper's score, ``paper`` ``[E, L, units]``).

    ``own`` is ``[E, L, units]`` and ``harm`` ``[L, units]`` as in ``causal_scores``; ranks count over every layer.
    """
    scores = causal_scores(own, harm, base_loss)
    others = others_mean(own)
    rows = []
    for e, emotion in enumerate(emotions):
        score = float(scores[e, layer, index])
        table = ranking_table(own[e], others[e], harm, scores[e], kind)  # the ranking's own order, ties included
        place = int(np.flatnonzero((table["layer"].to_numpy() == layer) & (table[kind].to_numpy() == index))[0]) + 1
        rows.append(
            {
                "emotion": emotion,
                "own": float(own[e, layer, index]),
                "others": float(others[e, layer, index]),
                "score": score,
                "rank": place if np.isfinite(score) else 0,
                "paper_rank": int((paper[e] > paper[e, layer, index]).sum()) + 1,
            }
        )
    return pd.DataFrame(rows)
