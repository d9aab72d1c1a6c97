"""Sublayer causal importance toward an emotion's reference direction, from one backward pass.

Sublayer importance is the change of the final-layer projection on the emotion's reference direction
per unit of the emotion injected at that sublayer's output (last prompt token). That is a
directional derivative, so one backward pass per prompt and emotion gives every sublayer at once;
``tests/test_pipeline_math.py`` checks it against small finite doses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from emo_core.activations import last_token_positions
from emo_core.generation import chat_prompt, encode
from emo_core.interventions import capture
from emo_core.models import ModelBundle
from emo_core.progress import Progress
from emo_core.scenarios import PromptSpec


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
    n_layers = bundle.shape.n_layers
    with torch.enable_grad():
        with capture(bundle, ["resid_mid", "resid_post"], grad=True) as captured:
            bundle.model(**batch, logits_to_keep=1)
        final = bundle.adapter.final_norm()(captured[("resid_post", n_layers - 1)][rows, last]).float()  # [batch, d_model]
        scores = final @ reference.to(final.device).T  # [batch, emotion]
        residuals = [captured.parts[(site, layer)][0] for site in ("resid_mid", "resid_post") for layer in range(n_layers)]
        per_emotion = []
        for e in range(reference.shape[0]):
            grads = torch.autograd.grad(scores[:, e].sum(), residuals, retain_graph=e < reference.shape[0] - 1)
            at_last = torch.stack([g[rows, last].float().cpu() for g in grads], dim=1)  # [batch, 2 L, d]
            mid = (at_last[:, :n_layers] * mid_dirs[e]).sum(-1)
            post = (at_last[:, n_layers:] * post_dirs[e]).sum(-1)
            per_emotion.append(torch.stack([mid, post], dim=-1))
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
