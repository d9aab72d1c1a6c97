"""One part at work on one text: a head's attention pattern and what it writes, a neuron's activation, word by word.

``trace`` runs a scenario's prompt and a reply through the model once, as generation ran them (the prompt, then
the reply's tokens over its KV cache, with the same edits), and keeps what every part did at every position:
the attention weights of every head, the head outputs before the output projection (``attn_z``), the neuron
activations (``mlp_post``) and the residual stream after each layer (``resid_post``). Everything a part page
shows is a slice of that one pass, so looking at another part of the same text costs no model run.

The attention weights are the model's own: for the pass, the model computes attention eagerly (the only
implementation that returns the weights) and switches back afterwards. Eager and the default kernel compute the
same attention, so another user's generation that runs meanwhile on the shared model is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from emo_core.arch import Site
from emo_core.forced import generation_calls
from emo_core.generation import as_text, encode
from emo_core.interventions import Intervention, capture, intervene
from emo_core.models import ModelBundle
from emo_core.parts import Component
from emo_core.reading import emotion_contrast

TRACE_SITES: tuple[Site, ...] = ("attn_z", "mlp_post", "resid_post")


@dataclass(frozen=True)
class TextTrace:
    """What every head and neuron did at every position of one prompt and reply (``trace``).

    Positions run over the whole templated prompt and then the reply; ``scenario`` and ``reply`` are the
    ``[start, end)`` spans a page shows (the user's message and the reply), the rest is the chat template.
    """

    tokens: tuple[str, ...]  # each position's token as text
    scenario: tuple[int, int]
    reply: tuple[int, int]
    attention: torch.Tensor | None  # [L, H, T, T] weights, row = the position that looks; None without attention
    attn_z: torch.Tensor  # [L, T, H * D]
    mlp_post: torch.Tensor  # [L, T, d_mlp]
    resid_post: torch.Tensor  # [L, T, d_model]

    @property
    def shown(self) -> list[int]:
        """The positions a page shows: the scenario's, then the reply's."""
        return [*range(*self.scenario), *range(*self.reply)]


@contextmanager
def eager_attention(bundle: ModelBundle) -> Iterator[None]:
    """Compute attention eagerly inside the block (so forward calls can return their weights), then switch back."""
    model = bundle.model
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _span_of(bundle: ModelBundle, prompt: str, scenario: str | None) -> tuple[int, int]:
    """Token span of the user's message in the templated ``prompt`` (the whole prompt when it cannot be found)."""
    ids = bundle.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=bool(scenario))
    n = len(ids["input_ids"])
    start = prompt.rfind(as_text(bundle.tokenizer, scenario)) if scenario else -1
    if start < 0:
        return 0, n
    end = start + len(as_text(bundle.tokenizer, scenario))
    inside = [i for i, (a, b) in enumerate(ids["offset_mapping"]) if a < end and b > start]
    return (inside[0], inside[-1] + 1) if inside else (0, n)


@torch.inference_mode()
def trace(
    bundle: ModelBundle,
    prompt: str,
    reply_ids: Sequence[int],
    edits: Sequence[Intervention] = (),
    scenario: str | None = None,
    attention: bool = True,
    sites: Sequence[Site] = TRACE_SITES,
) -> TextTrace:
    """One pass of ``prompt`` (templated) and ``reply_ids`` with ``edits``, every position kept (one row, no padding).

    The prompt runs as generation's prefill and the reply as its decode steps, over one KV cache, so steering that acts
    at the last position acts on every reply token, as it did while the reply was written. ``scenario`` (the user's
    message) marks the span of the prompt a page shows; ``attention=False`` skips the weights (a faster pass).
    ``sites`` not captured are left empty (``[L, T, 0]``).
    """
    batch = encode(bundle, [prompt])
    prompt_len = batch["input_ids"].shape[1]
    calls = generation_calls(bundle, batch, [list(reply_ids)], edits)
    shape = bundle.shape
    total = prompt_len + len(reply_ids)
    weights = torch.zeros(shape.n_layers, shape.n_heads, total, total) if attention else None
    cache, start = None, 0
    parts: list[dict] = []
    with eager_attention(bundle) if attention else nullcontext():
        for call_edits, inputs in calls:
            # Captures enter after the edits, as generation's observed states do: they see what the next part receives.
            with intervene(bundle, *call_edits), capture(bundle, list(sites)) as seen:
                out = bundle.model(**inputs, cache=cache, output_attentions=attention, logits_to_keep=1)
            parts.append(seen)
            cache = out.cache
            width = inputs["input_ids"].shape[1]
            if weights is not None:
                for layer, layer_weights in enumerate(out.attentions):
                    weights[layer, :, start : start + width, : start + width] = layer_weights[0].float().cpu()
            start += width
    ids = [*batch["input_ids"][0].tolist(), *reply_ids]
    empty = torch.zeros(shape.n_layers, total, 0)

    def stacked(site: Site) -> torch.Tensor:
        if site not in sites:
            return empty
        return torch.stack([torch.cat([seen[(site, layer)][0] for seen in parts]).float() for layer in range(shape.n_layers)])

    return TextTrace(
        tokens=tuple(bundle.tokenizer.decode([token]) for token in ids),
        scenario=_span_of(bundle, prompt, scenario),
        reply=(prompt_len, total),
        attention=weights,
        attn_z=stacked("attn_z"),
        mlp_post=stacked("mlp_post"),
        resid_post=stacked("resid_post"),
    )


def head_pattern(text: TextTrace, head: Component) -> torch.Tensor:
    """``[T, T]``: how much each position (row) attends to each earlier one (column), for ``head``; rows sum to 1."""
    if head.kind != "head" or text.attention is None:
        raise ValueError(f"{head.token} has no attention pattern here: trace the text with attention, and pass a head.")
    return text.attention[head.layer, head.index]


def head_writes(bundle: ModelBundle, text: TextTrace, head: Component, units: torch.Tensor) -> torch.Tensor:
    """``[T, E]``: what ``head`` writes at each position along each emotion, against the other emotions' mean.

    ``units`` is ``[E, L, d_model]`` unit directions per emotion and layer (the reading's expression vectors); the write
    is the head's share of the attention output (its columns of the output projection times its output), read as the
    reading reads a state (``emotion_contrast``) at the head's layer. Positive: it pushes toward the emotion.
    """
    if head.kind != "head":
        raise ValueError(f"{head.token} is not an attention head.")
    d = bundle.shape.head_dim
    z = text.attn_z[head.layer][:, head.index * d : (head.index + 1) * d]  # [T, D]
    written = z @ bundle.adapter.head_out_weight(head.layer, head.index).detach().float().cpu().T  # [T, d_model]
    return emotion_contrast(written[:, None, :], units[:, head.layer : head.layer + 1].float())


def neuron_activation(text: TextTrace, neuron: Component) -> torch.Tensor:
    """``[T]``: ``neuron``'s activation (the input of the MLP's down projection) at each position."""
    if neuron.kind != "neuron":
        raise ValueError(f"{neuron.token} is not a neuron.")
    return text.mlp_post[neuron.layer][:, neuron.index]


def neuron_leaning(bundle: ModelBundle, neuron: Component, units: torch.Tensor) -> torch.Tensor:
    """``[E]``: where ``neuron``'s output points, along each emotion against the others, per unit of activation.

    What it writes at a position is its activation times this; a negative activation writes the opposite.
    """
    column = bundle.adapter.neuron_out_weight(neuron.layer)[:, neuron.index].detach().float().cpu()  # [d_model]
    return emotion_contrast(column[None, :], units[:, neuron.layer : neuron.layer + 1].float())
