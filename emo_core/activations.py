"""Last-prompt-token activations of a prompt set, batched, with progress and resumable shards."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emo_core.arch import Site
from emo_core.generation import chat_prompt, continuation, encode, padded, prefix_cache
from emo_core.interventions import capture
from emo_core.models import ModelBundle
from emo_core.progress import Progress
from emo_core.scenarios import PromptSpec, prompt_set_hash

EXTRACT_SITES: tuple[Site, ...] = ("resid_mid", "resid_post", "attn_z", "mlp_post")


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding: ``[batch]``."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask * positions).argmax(dim=-1)


def prompt_groups(prompts: Sequence[PromptSpec]) -> list[list[int]]:
    """Indices of the prompts of each skeleton and system message, groups in order of first appearance.

    Such prompts (the valences of one skeleton and emotion) differ only in the event at the end of the user turn.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[(prompt.skeleton_id, prompt.system)].append(i)
    return list(groups.values())


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each at least its last token to run on its own."""
    limit = min(len(s) for s in sequences) - 1
    length = 0
    while length < limit and len({s[length] for s in sequences}) == 1:
        length += 1
    return length


def _inverse(order: list[int]) -> torch.Tensor:
    """The permutation that puts rows taken in ``order`` back in their original order."""
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    return back


def extract_batch(bundle: ModelBundle, prompts: Sequence[PromptSpec], sites: Sequence[Site] = EXTRACT_SITES) -> dict[Site, torch.Tensor]:
    """Per site a float32 ``[batch, n_layers, width]`` at each prompt's last token, rows in the order of ``prompts``.

    The prompts of one group (``prompt_groups``) share every token up to the event, so each group's shared
    prefix runs once (left-padded), its KV cache is copied to the group's rows, and only the suffixes run
    per prompt (right-padded, positions continuing the prefix): faster than a forward over the whole
    prompts, with the same states up to float rounding. Interventions active around it must not depend on
    batch rows or positions, which this split forward renumbers.
    """
    tokens = bundle.tokenizer([chat_prompt(bundle, p.user, p.system) for p in prompts], add_special_tokens=False)["input_ids"]
    prefixes, suffixes, order, owners = [], [], [], []
    for group, members in enumerate(prompt_groups(prompts)):
        length = shared_prefix_length([tokens[i] for i in members])
        prefixes.append(tokens[members[0]][:length])
        suffixes += [tokens[i][length:] for i in members]
        order += members
        owners += [group] * len(members)
    pad = bundle.tokenizer.pad_token_id
    prefix_ids, prefix_mask = padded(prefixes, pad, left=True)
    suffix_ids, suffix_mask = padded(suffixes, pad, left=False)
    owner = torch.tensor(owners)
    cache = prefix_cache(bundle, prefix_ids, prefix_mask, owner)  # row i gets the prefix keys and values of group owners[i]
    suffix = continuation(prefix_mask[owner].to(bundle.device), suffix_ids, suffix_mask)
    with torch.inference_mode(), capture(bundle, sites, positions=last_token_positions(suffix_mask)) as captured:
        bundle.model(**suffix, cache=cache, use_cache=True, logits_to_keep=1)  # states only: no logits over the vocabulary
    layers = range(bundle.shape.n_layers)
    back = _inverse(order)
    return {site: torch.stack([captured[(site, layer)] for layer in layers], dim=1).float()[back] for site in sites}


def extract(
    bundle: ModelBundle,
    prompts: Sequence[PromptSpec],
    batch_size: int = 16,
    shard_dir: Path | None = None,
    progress: Progress | None = None,
    sites: Sequence[Site] = EXTRACT_SITES,
) -> dict[Site, torch.Tensor]:
    """Activations of every prompt: per site ``[n_prompts, n_layers, width]``, rows in the order of ``prompts``.

    Batches take the prompts group after group (``prompt_groups``), so with a ``batch_size`` that is a
    multiple of the group size (3 valences) no group is split and ``extract_batch`` shares every prefix.
    With ``shard_dir``, each batch is saved as it completes, named with a fingerprint of its prompts, and
    reused on the next call, so an interrupted extraction resumes where it stopped and gives the same result.
    """
    order = [i for members in prompt_groups(prompts) for i in members]
    parts: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}
    bar = tqdm(total=len(prompts), desc="activations", unit="prompt", disable=progress is not None)
    for start in range(0, len(prompts), batch_size):
        chunk = [prompts[i] for i in order[start : start + batch_size]]
        shard = shard_dir / f"batch_{start:06d}_{len(chunk)}_{prompt_set_hash(chunk)}.safetensors" if shard_dir else None
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
        bar.update(len(chunk))
        if progress is not None:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    bar.close()
    back = _inverse(order)
    return {site: torch.cat(parts[site])[back] for site in sites}


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
