"""The cross-layer emotion circuit: a reference direction, sublayer causal importance, and selection.

Sublayer importance is the change of the final-layer projection on the emotion's reference direction
per unit of the emotion injected at that sublayer's output (last prompt token). That is a
directional derivative, so one backward pass per prompt and emotion gives every sublayer at once;
``tests/test_circuit.py`` checks it against small finite doses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from emo_core.activations import Progress, last_token_positions
from emo_core.generation import chat_prompt, encode
from emo_core.interventions import untuple
from emo_core.models import ModelBundle
from emo_core.scenarios import PromptSpec

ATTN, MLP = 0, 1  # sublayer kinds along the last axis of importance tensors


def stable_layers(n_layers: int) -> range:
    """The late layers whose directions agree with each other (the paper's L21-25 of 28)."""
    return range(int(0.7 * n_layers), int(0.87 * n_layers) + 1)


def reference_directions(mid: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Per emotion, the sign-aligned, normalised sum of its stable-layer directions: ``[n_emotions, d_model]``."""
    layers = list(stable_layers(mid.shape[1]))
    stacked = torch.cat([mid[:, layers], post[:, layers]], dim=1)  # [emotion, 2 k, d]
    anchor = stacked[:, :1]
    signs = torch.sign((stacked * anchor).sum(-1, keepdim=True))
    signs[signs == 0] = 1
    summed = (stacked * signs).sum(dim=1)
    return summed / summed.norm(dim=-1, keepdim=True)


def aligned_local_directions(local: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Local unit directions ``[n_emotions, n_layers, d]`` flipped to point along the reference."""
    signs = torch.sign(torch.einsum("eld,ed->el", local, reference))[..., None]
    signs[signs == 0] = 1
    return local * signs


def _record_residuals(bundle: ModelBundle, store: dict[str, list[torch.Tensor]]) -> list[torch.utils.hooks.RemovableHandle]:
    adapter = bundle.adapter

    def keep_input(module: nn.Module, args: tuple) -> None:
        store["mid"].append(args[0])

    def keep_output(module: nn.Module, args: tuple, output: object) -> None:
        store["post"].append(untuple(output))

    def keep_final(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        store["final"].append(output)

    handles = []
    for layer in range(bundle.shape.n_layers):
        handles.append(adapter.mlp_in_norm(layer).register_forward_pre_hook(keep_input))
        handles.append(adapter.layer(layer).register_forward_hook(keep_output))
    handles.append(adapter.final_norm().register_forward_hook(keep_final))
    return handles


def importance_batch(
    bundle: ModelBundle, texts: Sequence[str], reference: torch.Tensor, mid_dirs: torch.Tensor, post_dirs: torch.Tensor
) -> torch.Tensor:
    """Per-prompt sublayer importance for every emotion: ``[batch, n_emotions, n_layers, 2]``.

    Args:
        texts: templated prompts.
        reference: ``[n_emotions, d_model]`` reference directions (read-out after the final norm).
        mid_dirs, post_dirs: ``[n_emotions, n_layers, d_model]`` injected directions, aligned to the reference.
    """
    batch = encode(bundle, texts)
    rows = torch.arange(len(texts))
    last = last_token_positions(batch["attention_mask"]).cpu()
    store: dict[str, list[torch.Tensor]] = {"mid": [], "post": [], "final": []}
    handles = _record_residuals(bundle, store)
    try:
        with torch.enable_grad():
            bundle.model(**batch, logits_to_keep=1)
            final = store["final"][0][rows, last].float()  # [batch, d_model]
            scores = final @ reference.to(final.device).T  # [batch, emotion]
            residuals = store["mid"] + store["post"]
            per_emotion = []
            for e in range(reference.shape[0]):
                grads = torch.autograd.grad(scores[:, e].sum(), residuals, retain_graph=e < reference.shape[0] - 1)
                at_last = torch.stack([g[rows, last].float().cpu() for g in grads], dim=1)  # [batch, 2 L, d]
                n_layers = len(store["mid"])
                mid = (at_last[:, :n_layers] * mid_dirs[e]).sum(-1)
                post = (at_last[:, n_layers:] * post_dirs[e]).sum(-1)
                per_emotion.append(torch.stack([mid, post], dim=-1))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(per_emotion, dim=1)


def sublayer_importance(
    bundle: ModelBundle,
    prompts: Sequence[PromptSpec],
    reference: torch.Tensor,
    mid_dirs: torch.Tensor,
    post_dirs: torch.Tensor,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Mean sublayer importance over emotion-free prompts: ``[n_emotions, n_layers, 2]`` (attn, mlp)."""
    parts = []
    bar = tqdm(total=len(prompts), desc="sublayer importance", unit="prompt", disable=progress is not None)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        texts = [chat_prompt(bundle, p.user, p.system) for p in chunk]
        parts.append(importance_batch(bundle, texts, reference, mid_dirs, post_dirs))
        bar.update(len(chunk))
        if progress is not None:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    bar.close()
    return torch.cat(parts).mean(dim=0)


@dataclass(frozen=True)
class Circuit:
    """One emotion's circuit: the chosen sublayers and, inside them, the top heads and neurons.

    ``heads`` and ``neurons`` are ``(layer, index, score)`` sorted by score; ``weights`` maps
    ``(kind, layer)`` to the sublayer's importance relative to the circuit's strongest one.
    """

    emotion: str
    heads: tuple[tuple[int, int, float], ...]
    neurons: tuple[tuple[int, int, float], ...]
    weights: dict[tuple[int, int], float]


def select_circuit(
    emotion: str,
    importance: torch.Tensor,
    head_scores: torch.Tensor,
    neuron_scores: torch.Tensor,
    n_sublayers: int = 6,
    heads_per_layer: int = 2,
    neurons_per_layer: int = 16,
) -> Circuit:
    """Top heads and neurons inside the most important attention and MLP sublayers.

    Args:
        importance: ``[n_layers, 2]`` sublayer importance of this emotion.
        head_scores: ``[n_layers, n_heads]`` mean head importance.
        neuron_scores: ``[n_layers, d_mlp]`` mean neuron contribution.
    """
    weights: dict[tuple[int, int], float] = {}
    heads: list[tuple[int, int, float]] = []
    neurons: list[tuple[int, int, float]] = []
    top = float(importance.clamp(min=0).max()) or 1.0
    for kind, scores, per_layer, chosen in ((ATTN, head_scores, heads_per_layer, heads), (MLP, neuron_scores, neurons_per_layer, neurons)):
        for layer in importance[:, kind].argsort(descending=True)[:n_sublayers].tolist():
            if importance[layer, kind] <= 0:
                continue
            weights[(kind, layer)] = float(importance[layer, kind]) / top
            values, indices = scores[layer].topk(per_layer)
            chosen.extend((layer, int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0)
    heads.sort(key=lambda item: -item[2])
    neurons.sort(key=lambda item: -item[2])
    return Circuit(emotion, tuple(heads), tuple(neurons), weights)


def circuit_from_table(table: pd.DataFrame, emotion: str) -> Circuit:
    """One emotion's circuit from the cache's ``circuit`` table (see ``pipeline.circuit_table``)."""
    rows = table[table["emotion"] == emotion]
    if rows.empty:
        raise ValueError(f"There is no circuit for '{emotion}'.")
    members = {
        kind: tuple((int(r.layer), int(r.index), float(r.score)) for r in rows[rows["kind"] == kind].itertuples())
        for kind in ("head", "neuron")
    }
    weights = {(ATTN if r.kind == "head" else MLP, int(r.layer)): float(r.sublayer_weight) for r in rows.itertuples()}
    return Circuit(emotion, members["head"], members["neuron"], weights)
