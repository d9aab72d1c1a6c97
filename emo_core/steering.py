"""Steering a reply toward an emotion: along its direction, or through its circuit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch

from emo_core.circuit import ATTN, MLP, Circuit, circuit_from_table
from emo_core.interventions import ComponentEdit, Intervention, ResidualAddition
from emo_core.limits import check_strength
from emo_core.scenarios import EMOTIONS

if TYPE_CHECKING:  # the model module imports transformers; reading saved settings does not need it
    from emo_core.models import ModelBundle


def middle_layers(n_layers: int) -> range:
    """The middle third of the network, where the paper steers (layers 11-20 of 28)."""
    return range(n_layers // 3, 2 * n_layers // 3 + 1)


def direction_steering(vectors: torch.Tensor, layers: Sequence[int], alpha: float) -> ResidualAddition:
    """Add ``alpha * rms(h) * v[l] / |v[l]|`` to the output of each layer in ``layers``, at the last
    prompt token and every generated token.

    Args:
        vectors: ``[n_layers, d_model]`` one emotion's vector per layer (any length; it is normalised).
    """
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return ResidualAddition({layer: unit[layer] for layer in layers}, alpha=alpha, scale="rms", positions="last")


def circuit_steering(
    bundle: ModelBundle, circuit: Circuit, attn_shift: torch.Tensor, mlp_shift: torch.Tensor, strength: float
) -> list[ComponentEdit]:
    """Add the emotion's shift at the circuit's heads and neurons only, weighted by sublayer importance.

    Args:
        attn_shift: ``[n_layers, n_heads * head_dim]`` the emotion's mean o_proj-input shift.
        mlp_shift: ``[n_layers, d_mlp]`` the emotion's mean down_proj-input shift.
        strength: global scale; 0 leaves the model untouched, 1 adds the shift itself.
    """
    d = bundle.shape.head_dim
    channels: dict[tuple[int, int], list[int]] = defaultdict(list)
    for layer, head, _ in circuit.heads:
        channels[(ATTN, layer)].extend(range(head * d, (head + 1) * d))
    for layer, neuron, _ in circuit.neurons:
        channels[(MLP, layer)].append(neuron)
    edits = []
    for (kind, layer), picked in sorted(channels.items()):
        site, shift = ("attn_z", attn_shift) if kind == ATTN else ("mlp_post", mlp_shift)
        add = strength * circuit.weights[(kind, layer)] * shift[layer, picked]
        edits.append(ComponentEdit(site, layer, tuple(picked), scale=1.0, add=add, positions="last"))
    return edits


METHODS = ("direction", "circuit")


@dataclass(frozen=True)
class SteeringKit:
    """What steering needs for one model: expression vectors per site and each emotion's circuit."""

    bundle: ModelBundle
    resid: torch.Tensor  # [E, L, d_model]
    attn: torch.Tensor  # [E, L, n_heads * head_dim]
    mlp: torch.Tensor  # [E, L, d_mlp]
    circuits: Mapping[str, Circuit]

    def interventions(self, method: str, emotion: str, strength: float, layers: Sequence[int] = ()) -> list[Intervention]:
        """The edits that steer toward ``emotion`` with ``method`` (``direction`` uses ``layers``); the strength is checked
        against ``emo_core.limits``, since a huge one turns every later number into NaN."""
        check_strength(strength)
        e = EMOTIONS.index(emotion)
        if method == "direction":
            return [direction_steering(self.resid[e], layers or middle_layers(self.bundle.shape.n_layers), strength)]
        if method == "circuit":
            return list(circuit_steering(self.bundle, self.circuits[emotion], self.attn[e], self.mlp[e], strength))
        raise ValueError(f"Unknown steering method '{method}'; choose one of {', '.join(METHODS)}.")

    @classmethod
    def from_tensors(cls, bundle: ModelBundle, tensors: Mapping[str, torch.Tensor], circuits: pd.DataFrame) -> SteeringKit:
        """The kit for ``bundle`` from a cache's tensors and circuit table (saved results, or a build's own)."""
        return cls(
            bundle,
            tensors["expression.resid_post"],
            tensors["expression.attn_z"],
            tensors["expression.mlp_post"],
            {emotion: circuit_from_table(circuits, emotion) for emotion in EMOTIONS},
        )


def tuned_settings(table: pd.DataFrame, method: str, emotion: str) -> dict:
    """The ``layers`` and ``strength`` that tuning chose for ``method`` and ``emotion``, from the ``steering`` table."""
    rows = table[(table["method"] == method) & (table["emotion"] == emotion)]
    if rows.empty:
        raise ValueError(f"The cache has no {method} steering settings for '{emotion}'.")
    row = rows.iloc[0]
    return {"layers": [int(x) for x in str(row["layers"]).split(",") if x], "strength": float(row["strength"])}


def tuned_steering(kit: SteeringKit, tuned: Mapping[str, object], method: str, emotion: str) -> list[Intervention]:
    """The edits of ``method`` toward ``emotion`` with the settings ``tune_steering`` chose (``tuned_settings``)."""
    return kit.interventions(method, emotion, float(tuned["strength"]), tuple(tuned["layers"]))
