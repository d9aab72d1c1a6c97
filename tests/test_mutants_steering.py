"""Steering's edges that the steering tests leave open: short vectors, the refusal's wording, and a kit read from a cache's
tensors (each test kills mutants of steering.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from emo_core.causal import HARM_BASE, effect_name, harm_name
from emo_core.circuit import ATTN, MLP
from emo_core.scenarios import EMOTIONS
from emo_core.steering import SteeringKit, direction_steering

BUNDLE = SimpleNamespace(shape=SimpleNamespace(n_layers=6, head_dim=2))  # steering reads only these sizes


def test_vectors_shorter_than_one_are_normalised_too() -> None:
    # kills clamp(min=1.000000000001), which leaves a vector shorter than 1 unscaled
    vectors = torch.tensor([[0.0, 0.3, 0.4], [0.06, 0.0, 0.08]])
    steering = direction_steering(vectors, [0, 1], alpha=1.0)
    torch.testing.assert_close(steering.vectors[0], torch.tensor([0.0, 0.6, 0.8]))
    torch.testing.assert_close(steering.vectors[1], torch.tensor([0.6, 0.0, 0.8]))


def test_an_unknown_method_is_refused_with_the_choices() -> None:
    # kills the mutated separator of the listed choices
    kit = SteeringKit(BUNDLE, torch.zeros(6, 6, 3), torch.zeros(6, 6, 4), torch.zeros(6, 6, 2), {})
    with pytest.raises(ValueError, match=r"^Unknown steering method 'sideways'; choose one of direction, circuit\.$"):
        kit.interventions("sideways", "anger", 1.0)


def test_a_kit_from_a_caches_tensors_takes_each_sites_vectors_and_every_emotions_steering_circuit() -> None:
    # kills every mutant of from_tensors and steering_circuits (a mutated tensor name, ranking or emotion, a missing argument)
    tensors = {f"expression.{site}": torch.full((1,), float(n)) for n, site in enumerate(("resid_post", "attn_z", "mlp_post"))}
    assert SteeringKit.from_tensors(BUNDLE, tensors).circuits == {}  # a build's kit before its causal rankings exist
    n = len(EMOTIONS)
    heads, neurons = torch.zeros(n, 6, 3), torch.zeros(n, 6, 40)
    for e in range(n):
        heads[e, e % 6, 1] = 2.0 + e
        neurons[e, 2, e] = 1.0 + e
    tensors |= {
        effect_name("steered", "head", "mean"): heads,
        effect_name("steered", "neuron", "mean"): neurons,
        effect_name("asked", "head", "mean"): -heads,  # another baseline's ranking must not be the one used
        harm_name("head", "mean"): torch.zeros(6, 3),
        harm_name("neuron", "mean"): torch.zeros(6, 40),
        HARM_BASE: torch.tensor([3.0]),
    }
    kit = SteeringKit.from_tensors(BUNDLE, tensors)
    assert kit.bundle is BUNDLE
    assert kit.resid is tensors["expression.resid_post"] and kit.attn is tensors["expression.attn_z"]
    assert kit.mlp is tensors["expression.mlp_post"]
    assert sorted(kit.circuits) == sorted(EMOTIONS)
    for e, emotion in enumerate(EMOTIONS):
        circuit = kit.circuits[emotion]
        assert (circuit.emotion, circuit.heads, circuit.neurons) == (emotion, ((e % 6, 1, 2.0 + e),), ((2, e, 1.0 + e),))
        assert circuit.weights == {(ATTN, e % 6): 1.0, (MLP, 2): 1.0}
