"""Last-prompt-token activations of a prompt set, batched, with progress and resumable shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emo_core.arch import Site
from emo_core.generation import chat_prompt, encode
from emo_core.interventions import capture
from emo_core.models import ModelBundle
from emo_core.scenarios import PromptSpec

EXTRACT_SITES: tuple[Site, ...] = ("resid_mid", "resid_post", "attn_z", "mlp_post")
Progress = Callable[[int, int], None]  # (done, total)
StageProgress = Callable[[str, int, int], None]  # (stage, done, total)


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding: ``[batch]``."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask * positions).argmax(dim=-1)


def extract_batch(bundle: ModelBundle, prompts: Sequence[PromptSpec], sites: Sequence[Site] = EXTRACT_SITES) -> dict[Site, torch.Tensor]:
    """One forward pass over a batch; per site a float32 ``[batch, n_layers, width]`` at the last prompt token."""
    texts = [chat_prompt(bundle, p.user, p.system) for p in prompts]
    batch = encode(bundle, texts)
    positions = last_token_positions(batch["attention_mask"])
    with torch.inference_mode(), capture(bundle, sites, positions=positions) as captured:
        bundle.model(**batch, use_cache=False, logits_to_keep=1)  # states only: no logits over the vocabulary
    layers = range(bundle.shape.n_layers)
    return {site: torch.stack([captured[(site, layer)] for layer in layers], dim=1).float() for site in sites}


def extract(
    bundle: ModelBundle,
    prompts: Sequence[PromptSpec],
    batch_size: int = 16,
    shard_dir: Path | None = None,
    progress: Progress | None = None,
    sites: Sequence[Site] = EXTRACT_SITES,
) -> dict[Site, torch.Tensor]:
    """Activations of every prompt: per site ``[n_prompts, n_layers, width]``.

    With ``shard_dir``, each batch is saved as it completes and reused on the next call, so an
    interrupted extraction resumes where it stopped and gives the same result.
    """
    parts: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}
    starts = range(0, len(prompts), batch_size)
    bar = tqdm(total=len(prompts), desc="activations", unit="prompt", disable=progress is not None)
    for start in starts:
        chunk = prompts[start : start + batch_size]
        shard = shard_dir / f"batch_{start:06d}_{len(chunk)}.safetensors" if shard_dir else None
        if shard is not None and shard.is_file():
            acts = load_file(shard)
        else:
            acts = extract_batch(bundle, chunk, sites)
            if shard is not None:
                shard.parent.mkdir(parents=True, exist_ok=True)
                partial = shard.with_suffix(".partial")
                save_file({site: acts[site].contiguous() for site in sites}, partial)
                partial.rename(shard)
        for site in sites:
            parts[site].append(acts[site])
        done = min(start + batch_size, len(prompts))
        bar.update(len(chunk))
        if progress is not None:
            progress(done, len(prompts))
    bar.close()
    return {site: torch.cat(parts[site]) for site in sites}


def neutral_means(bundle: ModelBundle, prompts: Sequence[PromptSpec], batch_size: int = 16) -> dict[Site, torch.Tensor]:
    """Mean head and neuron activations over every real token of emotion-free prompts: ``attn_z`` ``[L, H*D]``, ``mlp_post`` ``[L, d_mlp]``.

    Mean ablation replaces a component with this mean: it removes what the component says about this
    prompt while keeping its typical output, where zero ablation also removes the typical output.
    """
    sites: tuple[Site, ...] = ("attn_z", "mlp_post")
    layers = range(bundle.shape.n_layers)
    totals: dict[Site, torch.Tensor] = {}
    count = 0
    for start in range(0, len(prompts), batch_size):
        batch = encode(bundle, [chat_prompt(bundle, p.user, p.system) for p in prompts[start : start + batch_size]])
        weights = batch["attention_mask"].float().cpu()[..., None]  # [batch, pos, 1]
        with torch.inference_mode(), capture(bundle, sites) as captured:
            bundle.model(**batch, use_cache=False, logits_to_keep=1)  # states only: no logits over the vocabulary
        for site in sites:
            summed = torch.stack([(captured[(site, layer)] * weights).sum(dim=(0, 1)) for layer in layers])
            totals[site] = totals[site] + summed if site in totals else summed
        count += int(weights.sum())
    return {site: total / max(count, 1) for site, total in totals.items()}
