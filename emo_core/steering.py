"""Steering a reply toward an emotion: along its direction, or through its steering circuit.

The steering circuit is not the paper's circuit (the parts that *write* the emotion, ``circuit.py``): it is
each emotion's heads and neurons that *matter when switched off* (the causal ranking on the steered
baseline, ``causal.py``), which moved far more replies on target than the paper's circuit
(``docs/findings.md``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd
import torch

from emo_core.baselines import METHODS
from emo_core.causal import stored_scores
from emo_core.circuit import ATTN, MLP, Circuit
from emo_core.errors import EmoCoreError
from emo_core.interventions import ComponentEdit, Intervention, ResidualAddition
from emo_core.limits import check_strength
from emo_core.parts import top_parts
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


STEERING_HEADS, STEERING_NEURONS = 24, 256  # the size that steered training replies best (docs/steering.md)
STEERING_BASELINE, STEERING_ABLATION = "steered", "mean"  # the causal ranking whose top parts circuit steering pushes


def steering_circuit(
    emotion: str, head_scores: torch.Tensor, neuron_scores: torch.Tensor, n_heads: int = STEERING_HEADS, n_neurons: int = STEERING_NEURONS
) -> Circuit:
    """The parts circuit steering pushes toward ``emotion``: its ``n_heads`` heads and ``n_neurons`` neurons with the best
    causal scores (``[L, units]`` each), every sublayer weighted alike. Harmful parts (``-inf``) and parts whose knockout
    does not lower the emotion more than the others (score 0 or less) are never taken."""
    heads = tuple((c.layer, c.index, score) for c, score in top_parts(head_scores, "head", n_heads) if score > 0)
    neurons = tuple((c.layer, c.index, score) for c, score in top_parts(neuron_scores, "neuron", n_neurons) if score > 0)
    weights = {(ATTN, layer): 1.0 for layer, _, _ in heads} | {(MLP, layer): 1.0 for layer, _, _ in neurons}
    return Circuit(emotion, heads, neurons, weights)


def steering_circuits(tensors: Mapping[str, torch.Tensor]) -> dict[str, Circuit]:
    """Every emotion's steering circuit from a cache's (or a build's own) causal rankings; empty before they exist."""
    try:
        heads, neurons = (stored_scores(tensors, STEERING_BASELINE, kind, STEERING_ABLATION) for kind in ("head", "neuron"))
    except KeyError:
        return {}
    return {emotion: steering_circuit(emotion, heads[e], neurons[e]) for e, emotion in enumerate(EMOTIONS)}


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


@dataclass(frozen=True)
class SteeringKit:
    """What steering needs for one model: expression vectors per site, each emotion's steering circuit, and the settings
    tuning chose (``tuning``: the ``steering`` table, ``None`` before tuning)."""

    bundle: ModelBundle
    resid: torch.Tensor  # [E, L, d_model]
    attn: torch.Tensor  # [E, L, n_heads * head_dim]
    mlp: torch.Tensor  # [E, L, d_mlp]
    circuits: Mapping[str, Circuit]
    tuning: pd.DataFrame | None = field(default=None, compare=False)

    def interventions(self, method: str, emotion: str, strength: float, layers: Sequence[int] = ()) -> list[Intervention]:
        """The edits that steer toward ``emotion`` with ``method`` (``direction`` uses ``layers``); the strength is checked
        against ``emo_core.limits``, since a huge one turns every later number into NaN."""
        check_strength(strength)
        e = EMOTIONS.index(emotion)
        if method == "direction":
            return [direction_steering(self.resid[e], layers or middle_layers(self.bundle.shape.n_layers), strength)]
        if method == "circuit":
            if emotion not in self.circuits:
                raise EmoCoreError(
                    "Circuit steering needs the causal rankings, which these results lack; rebuild them with `python -m emo_core build`."
                )
            return list(circuit_steering(self.bundle, self.circuits[emotion], self.attn[e], self.mlp[e], strength))
        raise ValueError(f"Unknown steering method '{method}'; choose one of {', '.join(METHODS)}.")

    def settings(self, method: str, emotion: str) -> dict:
        """The ``layers`` and ``strength`` tuning chose for ``method`` and ``emotion``."""
        if self.tuning is None:
            raise EmoCoreError("Steering has not been tuned for these results yet; rebuild them with `python -m emo_core build`.")
        return tuned_settings(self.tuning, method, emotion)

    def tuned(self, method: str, emotion: str, strength: float | None = None) -> list[Intervention]:
        """The edits of ``method`` toward ``emotion`` with the tuned settings, at ``strength`` instead of the tuned one if given."""
        settings = self.settings(method, emotion)
        return self.interventions(method, emotion, settings["strength"] if strength is None else strength, tuple(settings["layers"]))

    def with_tuning(self, tuning: pd.DataFrame) -> SteeringKit:
        """The same kit with ``tuning``'s settings."""
        return replace(self, tuning=tuning)

    @classmethod
    def from_tensors(cls, bundle: ModelBundle, tensors: Mapping[str, torch.Tensor], tuning: pd.DataFrame | None = None) -> SteeringKit:
        """The kit for ``bundle`` from a cache's tensors (saved results, or a build's own: before its causal rankings
        exist, the kit steers only along directions) and its tuned settings."""
        return cls(
            bundle,
            tensors["expression.resid_post"],
            tensors["expression.attn_z"],
            tensors["expression.mlp_post"],
            steering_circuits(tensors),
            tuning,
        )


def tuned_settings(table: pd.DataFrame, method: str, emotion: str) -> dict:
    """The ``layers`` and ``strength`` that tuning chose for ``method`` and ``emotion``, from the ``steering`` table."""
    rows = table[(table["method"] == method) & (table["emotion"] == emotion)]
    if rows.empty:
        raise ValueError(f"The cache has no {method} steering settings for '{emotion}'.")
    row = rows.iloc[0]
    return {"layers": [int(x) for x in str(row["layers"]).split(",") if x], "strength": float(row["strength"])}
