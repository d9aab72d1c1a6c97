"""One part at work on a text (``part_activity``): the pattern is the model's own attention, the trace holds the states that
wrote the reply, and the per-part writes add up to what the layer writes."""

from __future__ import annotations

import pytest
import torch

import emo_core as ec
from emo_core.arch import out_weight
from emo_core.generation import GenerationSettings, chat_prompt, generate
from emo_core.interventions import ResidualAddition
from emo_core.part_activity import eager_attention, head_pattern, head_writes, neuron_activation, neuron_leaning, trace
from emo_core.parts import Component
from emo_core.reading import emotion_contrast

SCENARIO = "The bakery on my street closed after forty years.\nThe owner gave me her sourdough starter on the last day."


def _reply(bundle: ec.ModelBundle, n: int = 9) -> list[int]:
    return bundle.tokenizer(" I am so glad she trusted you with it, keep it alive!", add_special_tokens=False)["input_ids"][:n]


def _units(bundle: ec.ModelBundle, seed: int = 3) -> torch.Tensor:
    vectors = torch.randn(6, bundle.shape.n_layers, bundle.shape.d_model, generator=torch.Generator().manual_seed(seed))
    return vectors / vectors.norm(dim=-1, keepdim=True)


def test_the_pattern_is_the_models_own_attention(tiny: ec.ModelBundle) -> None:
    """Prompt and reply traced over a KV cache give, for every head, the weights of one eager pass over the whole text."""
    prompt = chat_prompt(tiny, SCENARIO)
    reply = _reply(tiny)
    text = trace(tiny, prompt, reply, scenario=SCENARIO)
    ids = torch.tensor([tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"] + reply])
    before = tiny.model.config._attn_implementation
    with torch.inference_mode(), eager_attention(tiny):
        reference = tiny.model(input_ids=ids, output_attentions=True).attentions
    assert tiny.model.config._attn_implementation == before  # switched back
    assert text.attention.shape[-1] == ids.shape[1]
    for layer in range(tiny.shape.n_layers):
        for head in range(tiny.shape.n_heads):
            pattern = head_pattern(text, Component("head", layer, head))
            torch.testing.assert_close(pattern, reference[layer][0, head].float(), atol=1e-6, rtol=0)
    assert torch.allclose(text.attention.sum(dim=-1), torch.ones(()), atol=1e-5)  # every row is a distribution


def test_the_scenario_span_is_the_users_message(embedded: ec.ModelBundle) -> None:
    prompt = chat_prompt(embedded, SCENARIO)
    text = trace(embedded, prompt, _reply(embedded, 4), scenario=SCENARIO, attention=False)
    assert "".join(text.tokens[slice(*text.scenario)]).strip() == SCENARIO.strip()
    assert text.reply == (text.reply[0], text.reply[0] + 4)
    assert text.shown == [*range(*text.scenario), *range(*text.reply)]


def test_the_trace_holds_the_states_that_wrote_a_steered_reply(tiny: ec.ModelBundle) -> None:
    """Steering at the last position steered every generated token; the trace re-creates exactly those states."""
    layers = tuple(range(tiny.shape.n_layers))
    vector = torch.randn(tiny.shape.d_model, generator=torch.Generator().manual_seed(0)).to(tiny.dtype)
    steer = ResidualAddition({1: vector}, alpha=2.0, scale="unit")
    prompt = chat_prompt(tiny, SCENARIO)
    reply = generate(tiny, [prompt], GenerationSettings(max_new_tokens=6, min_new_tokens=6), [steer], observe=layers)[0]
    text = trace(tiny, prompt, reply.token_ids, [steer], attention=False)
    start = reply.prompt_tokens - 1  # the states that produced the reply: the last prompt token, then every reply token but the last
    produced = text.resid_post[:, start : start + len(reply.token_ids)].transpose(0, 1)  # [n, L, d]
    torch.testing.assert_close(produced.float(), reply.states.float(), atol=1e-4, rtol=1e-4)


def test_the_heads_writes_add_up_to_the_attention_output(tiny: ec.ModelBundle) -> None:
    units = _units(tiny)
    text = trace(tiny, chat_prompt(tiny, SCENARIO), _reply(tiny), attention=False)
    layer = tiny.shape.n_layers - 1
    heads = sum(head_writes(tiny, text, Component("head", layer, h), units) for h in range(tiny.shape.n_heads))
    projection = out_weight(tiny.adapter.attn_out(layer)).detach().float()  # the output projection without its bias
    whole = emotion_contrast((text.attn_z[layer] @ projection.T)[:, None, :], units[:, layer : layer + 1])
    torch.testing.assert_close(heads, whole, atol=1e-4, rtol=1e-4)


def test_the_neurons_writes_add_up_to_the_mlp_output(tiny: ec.ModelBundle) -> None:
    units = _units(tiny)
    text = trace(tiny, chat_prompt(tiny, SCENARIO), _reply(tiny), attention=False)
    layer = 1
    neurons = [Component("neuron", layer, j) for j in range(tiny.shape.d_mlp)]
    activations = torch.stack([neuron_activation(text, n) for n in neurons], dim=-1)  # [T, d_mlp]
    torch.testing.assert_close(activations, text.mlp_post[layer])
    leanings = torch.stack([neuron_leaning(tiny, n, units) for n in neurons])  # [d_mlp, E]
    down = tiny.adapter.neuron_out_weight(layer).detach().float()
    whole = emotion_contrast((activations @ down.T)[:, None, :], units[:, layer : layer + 1])
    torch.testing.assert_close(activations @ leanings, whole, atol=1e-4, rtol=1e-4)


def test_parts_of_the_wrong_kind_are_refused(tiny: ec.ModelBundle) -> None:
    text = trace(tiny, chat_prompt(tiny, SCENARIO), _reply(tiny, 2), attention=False)
    with pytest.raises(ValueError, match="attention"):
        head_pattern(text, Component("head", 0, 0))  # traced without attention
    with pytest.raises(ValueError, match="not a neuron"):
        neuron_activation(text, Component("head", 0, 0))
    with pytest.raises(ValueError, match="not an attention head"):
        head_writes(tiny, text, Component("neuron", 0, 0), _units(tiny))


def test_eager_attention_switches_back_after_an_error(tiny: ec.ModelBundle) -> None:
    before = tiny.model.config._attn_implementation
    with pytest.raises(RuntimeError), eager_attention(tiny):
        assert tiny.model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert tiny.model.config._attn_implementation == before
