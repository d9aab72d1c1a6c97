"""Steering values: each steered layer gets its own emotion vector, unit length, at the tuned strength."""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from emo_core.circuit import ATTN, MLP, Circuit
from emo_core.errors import EmoCoreError
from emo_core.interventions import ResidualAddition
from emo_core.scenarios import EMOTIONS
from emo_core.steering import SteeringKit, direction_steering, middle_layers, steering_circuit, tuned_settings

N_LAYERS, D_MODEL = 9, 6


def _vectors(*leading: int) -> torch.Tensor:
    """Distinct vectors of distinct lengths, so a vector taken from the wrong layer or emotion cannot pass."""
    torch.manual_seed(0)
    return torch.randn(*leading, N_LAYERS, D_MODEL) * torch.arange(1, N_LAYERS + 1)[:, None]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def test_direction_steering_adds_each_layers_own_unit_vector() -> None:
    vectors = _vectors()
    addition = direction_steering(vectors, [2, 3, 7], alpha=0.7)
    assert isinstance(addition, ResidualAddition)
    assert sorted(addition.vectors) == [2, 3, 7]
    for layer in (2, 3, 7):
        torch.testing.assert_close(addition.vectors[layer], _unit(vectors[layer]), rtol=0, atol=1e-6)
    assert (addition.alpha, addition.scale, addition.positions, addition.rows) == (0.7, "rms", "last", None)


def _kit() -> SteeringKit:
    bundle = SimpleNamespace(shape=SimpleNamespace(n_layers=N_LAYERS, head_dim=2))  # steering reads only these two sizes
    circuits = {e: Circuit(e, heads=(), neurons=(), weights={}) for e in EMOTIONS}
    n = len(EMOTIONS)
    return SteeringKit(bundle, _vectors(n), torch.zeros(n, N_LAYERS, 4), torch.zeros(n, N_LAYERS, 3), circuits)


@pytest.mark.parametrize("emotion", ["anger", "fear", "disgust"])
def test_the_kit_steers_with_the_emotions_vectors_on_the_chosen_or_middle_layers(emotion: str) -> None:
    kit = _kit()
    e = EMOTIONS.index(emotion)
    (chosen,) = kit.interventions("direction", emotion, 1.5, layers=(4, 5))
    assert sorted(chosen.vectors) == [4, 5] and chosen.alpha == 1.5
    for layer in (4, 5):
        torch.testing.assert_close(chosen.vectors[layer], _unit(kit.resid[e, layer]), rtol=0, atol=1e-6)
    (default,) = kit.interventions("direction", emotion, 1.0)
    assert sorted(default.vectors) == list(middle_layers(N_LAYERS)) == [3, 4, 5, 6]
    for layer in middle_layers(N_LAYERS):
        torch.testing.assert_close(default.vectors[layer], _unit(kit.resid[e, layer]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown steering method 'sideways'"):
        kit.interventions("sideways", emotion, 1.0)


def test_tuned_steering_uses_the_tables_layers_and_strength() -> None:
    table = pd.DataFrame([{"method": "direction", "emotion": "sadness", "layers": "1,6", "strength": 0.8}])
    tuned = tuned_settings(table, "direction", "sadness")
    assert tuned == {"layers": [1, 6], "strength": 0.8}
    kit = _kit().with_tuning(table)
    (addition,) = kit.tuned("direction", "sadness")
    assert kit.tuned("direction", "sadness", strength=2.0)[0].alpha == 2.0
    assert sorted(addition.vectors) == [1, 6] and addition.alpha == 0.8
    torch.testing.assert_close(addition.vectors[6], _unit(kit.resid[EMOTIONS.index("sadness"), 6]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no circuit steering settings for 'sadness'"):
        tuned_settings(table, "circuit", "sadness")


def test_circuit_steering_adds_the_weighted_shift_at_the_circuit_only() -> None:
    kit = _kit()
    circuit = Circuit("fear", heads=((1, 1, 0.5),), neurons=((0, 2, 0.4), (0, 0, 0.2)), weights={(ATTN, 1): 1.0, (MLP, 0): 0.5})
    e = EMOTIONS.index("fear")
    attn = torch.arange(len(EMOTIONS) * N_LAYERS * 4, dtype=torch.float32).reshape(len(EMOTIONS), N_LAYERS, 4) + 1
    mlp = -torch.arange(len(EMOTIONS) * N_LAYERS * 3, dtype=torch.float32).reshape(len(EMOTIONS), N_LAYERS, 3) - 1
    kit = SteeringKit(kit.bundle, kit.resid, attn, mlp, {**kit.circuits, "fear": circuit})
    heads, neurons = kit.interventions("circuit", "fear", 3.0)
    assert (heads.site, heads.layer, heads.channels, heads.scale, heads.positions) == ("attn_z", 1, (2, 3), 1.0, "last")
    torch.testing.assert_close(heads.add, 3.0 * 1.0 * attn[e, 1, [2, 3]])
    assert (neurons.site, neurons.layer, neurons.channels, neurons.scale) == ("mlp_post", 0, (2, 0), 1.0)
    torch.testing.assert_close(neurons.add, 3.0 * 0.5 * mlp[e, 0, [2, 0]])


def test_the_steering_circuit_takes_the_best_causal_scores_and_never_a_harmful_part() -> None:
    heads = torch.tensor([[0.1, 0.9, float("-inf")], [0.5, -0.2, 0.3]])
    neurons = torch.tensor([[0.0, 0.7], [float("-inf"), 0.2]])
    circuit = steering_circuit("fear", heads, neurons, n_heads=3, n_neurons=5)
    assert [part[:2] for part in circuit.heads] == [(0, 1), (1, 0), (1, 2)]
    assert [part[:2] for part in circuit.neurons] == [(0, 1), (1, 1)]  # neither the harmful one nor one scoring 0
    assert circuit.weights == {(ATTN, 0): 1.0, (ATTN, 1): 1.0, (MLP, 0): 1.0, (MLP, 1): 1.0}


def test_circuit_steering_without_causal_rankings_says_so() -> None:
    kit = _kit()
    kit = SteeringKit(kit.bundle, kit.resid, kit.attn, kit.mlp, {})
    with pytest.raises(EmoCoreError, match="Circuit steering needs the causal rankings"):
        kit.interventions("circuit", "fear", 1.0)
