"""Replaying the layers above a change gives what a full forward pass gives, on every supported architecture."""

from __future__ import annotations

import torch

import emo_core as ec
from emo_core.generation import chat_prompt
from emo_core.interventions import HeadAblation, NeuronAblation, ResidualAddition, lowest_layer
from emo_core.replay import record, replay
from tests.conftest import exact, last_token_states


def test_replay_equals_a_full_pass_with_the_same_edits(tiny: ec.ModelBundle) -> None:
    prompt = chat_prompt(tiny, "I lost my wallet\nSomeone handed it in.", "Be brief.")
    torch.manual_seed(0)
    steering = [ResidualAddition({0: torch.randn(tiny.shape.d_model, dtype=tiny.dtype)}, 2.0, rows=(0,))]
    changes = [HeadAblation(((1, 0),), rows=(0,)), NeuronAblation(((2, 3), (1, 1)), rows=(2,))]
    recorded = record(tiny, prompt, steering)  # a one-row recording: its edits lose their rows and apply to every replayed row
    layers = list(range(tiny.shape.n_layers))
    got = replay(tiny, recorded, changes, 3, layers)
    want = last_token_states(tiny, [prompt] * 3, [ResidualAddition(steering[0].vectors, 2.0), *changes], layers)
    torch.testing.assert_close(got, want, atol=exact(tiny), rtol=0)
    torch.testing.assert_close(recorded.last_token(layers), want[1], atol=exact(tiny), rtol=0)  # row 1: nothing changed
    assert not torch.allclose(got[0, 1:], got[1, 1:]) and torch.equal(got[0, 0], got[1, 0])  # parts at layer 1 leave layer 0 alone


def test_replay_runs_only_the_layers_from_the_lowest_change_to_the_highest_read(tiny: ec.ModelBundle) -> None:
    prompt = chat_prompt(tiny, "My flight was delayed", "Be brief.")
    recorded = record(tiny, prompt)
    hooks_before = [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in tiny.adapter.layers]
    calls: list[int] = []
    handles = [
        tiny.adapter.layer(layer).register_forward_pre_hook(lambda module, args, layer=layer: calls.append(layer))
        for layer in range(tiny.shape.n_layers)
    ]
    try:
        states = replay(tiny, recorded, [NeuronAblation(((1, 0),), rows=(1,))], 2, [0, 1])
        unchanged = replay(tiny, recorded, [], 2, [0, 1, 2])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [1]
    torch.testing.assert_close(states[0], recorded.last_token([0, 1]))
    assert torch.equal(unchanged, recorded.last_token([0, 1, 2]).expand(2, -1, -1))
    assert [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in tiny.adapter.layers] == hooks_before


def test_the_lowest_layer_counts_steering_vectors_and_parts(tiny: ec.ModelBundle) -> None:
    vector = torch.zeros(tiny.shape.d_model, dtype=tiny.dtype)
    steering = ResidualAddition({2: vector, 1: vector}, 1.0)
    assert lowest_layer(tiny.adapter, [NeuronAblation(((2, 0),)), steering]) == 1
    assert lowest_layer(tiny.adapter, [HeadAblation(((-1, 0),))]) == tiny.shape.n_layers - 1
    assert lowest_layer(tiny.adapter, []) is None
