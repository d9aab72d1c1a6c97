"""Steering a reply toward an emotion: along its direction, or through its circuit."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emo_core.circuit import ATTN, MLP, Circuit
from emo_core.interventions import ComponentEdit, ResidualAddition
from emo_core.models import ModelBundle


def middle_layers(n_layers: int) -> range:
    """The middle third of the network, where the paper steers (layers 11-20 of 28)."""
    return range(n_layers // 3, 2 * n_layers // 3 + 1)


def direction_steering(directions: torch.Tensor, layers: Sequence[int], alpha: float) -> ResidualAddition:
    """Add ``alpha * rms(h) * v[l]`` to the output of each layer in ``layers``, at the last prompt
    token and every generated token.

    Args:
        directions: ``[n_layers, d_model]`` unit directions of one emotion at ``resid_post``.
    """
    return ResidualAddition({layer: directions[layer] for layer in layers}, alpha=alpha, scale="rms", positions="last")


def circuit_steering(
    bundle: ModelBundle, circuit: Circuit, attn_diff: torch.Tensor, mlp_diff: torch.Tensor, strength: float
) -> list[ComponentEdit]:
    """Inject the emotion's mean difference at the circuit's heads and neurons, weighted by sublayer importance.

    Args:
        attn_diff: ``[n_layers, n_heads * head_dim]`` the emotion's mean o_proj-input difference.
        mlp_diff: ``[n_layers, d_mlp]`` the emotion's mean down_proj-input difference.
        strength: global scale; 0 leaves the model untouched.
    """
    d = bundle.shape.head_dim
    edits = []
    for layer, head, _ in circuit.heads:
        channels = tuple(range(head * d, (head + 1) * d))
        add = strength * circuit.weights[(ATTN, layer)] * attn_diff[layer, head * d : (head + 1) * d]
        edits.append(ComponentEdit("attn_z", layer, channels, scale=1.0, add=add, positions="last"))
    for layer, neuron, _ in circuit.neurons:
        add = strength * circuit.weights[(MLP, layer)] * mlp_diff[layer, neuron : neuron + 1]
        edits.append(ComponentEdit("mlp_post", layer, (neuron,), scale=1.0, add=add, positions="last"))
    return edits
