"""Expression vectors: how the model's state shifts while it *says* something emotional.

The paper's directions come from prompts that ask for an emotion. A small model like SmolLM2-135M
hardly follows such a request (its prompted replies are judged on target about as often as chance),
so those directions describe the request more than the reply, and steering along them moves replies
little. Here the model instead reads sentences that express each emotion, written as its own reply
to a fixed question, and we average its activations over the reply tokens. The emotion's mean minus
the neutral sentences' mean, at each site and layer, is what steering adds.

The sentences are the judge's training split, never its held-out split nor the evaluation scenarios.

The same shifts rank the circuit's members (``expression_scores``): the paper's contribution formula
(activation times written vector, read along the emotion's direction), applied to each head's and
neuron's shift while the model expresses the emotion. Components ranked by their pull on the prompted
direction move replies little in this model; these are the ones that write the emotion it says.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from emo_core.arch import Site
from emo_core.components import head_contributions, neuron_contributions
from emo_core.generation import chat_prompt, continuation, padded, prefix_cache
from emo_core.interventions import Captured, capture
from emo_core.judge import TRAIN_PATH, read_labelled
from emo_core.models import ModelBundle
from emo_core.progress import Progress
from emo_core.scenarios import EMOTIONS

EXPRESSION_SITES: tuple[Site, ...] = ("resid_post", "attn_z", "mlp_post")
QUESTION = "Tell me how you feel about what happened."


def reply_batches(
    bundle: ModelBundle, replies: Sequence[str], sites: Sequence[Site], batch_size: int = 32, question: str = QUESTION
) -> Iterator[tuple[Captured, torch.Tensor]]:
    """Each batch of ``replies`` read as the answer to ``question``: its activations ``captured[(site, layer)]``
    ``[rows, positions, width]`` over the reply tokens only (right-padded), and the ``[rows, positions]`` mask of real tokens.

    The question is the same for every reply, so each batch runs it once and copies its KV cache to the batch's
    rows, which then run only their reply tokens (right-padded, positions continuing the question's).
    """
    prompt = chat_prompt(bundle, question)
    question = bundle.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    n = len(question)
    for start in range(0, len(replies), batch_size):
        texts = [prompt + reply for reply in replies[start : start + batch_size]]
        # The reply tokens as they are tokenized after the question, which is what the question's cache continues.
        answers = [ids[n:] for ids in bundle.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        ids, mask = padded(answers, bundle.tokenizer.pad_token_id, left=False)
        rows = len(answers)
        cache = prefix_cache(bundle, torch.tensor([question]), torch.ones(1, n, dtype=mask.dtype), torch.zeros(rows, dtype=torch.long))
        answer = continuation(torch.ones(rows, n, dtype=mask.dtype, device=bundle.device), ids, mask)
        with torch.inference_mode(), capture(bundle, sites) as captured:
            bundle.model(**answer, cache=cache, use_cache=True, logits_to_keep=1)  # states only: no logits over the vocabulary
        yield captured, mask


def reply_means(
    bundle: ModelBundle, replies: Sequence[str], sites: Sequence[Site] = EXPRESSION_SITES, batch_size: int = 32
) -> dict[Site, torch.Tensor]:
    """Mean activation over the reply tokens of each reply, read as the answer to ``QUESTION``: per site ``[n, L, width]``."""
    parts: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}
    layers = range(bundle.shape.n_layers)
    for captured, mask in reply_batches(bundle, replies, sites, batch_size):
        weights = (mask / mask.sum(dim=1, keepdim=True).clamp(min=1)).float()[..., None]
        for site in sites:
            parts[site].append(torch.stack([(captured[(site, layer)].float().cpu() * weights).sum(dim=1) for layer in layers], dim=1))
    return {site: torch.cat(parts[site]) for site in sites}


def expression_vectors(bundle: ModelBundle, progress: Progress | None = None) -> dict[Site, torch.Tensor]:
    """Per site ``[E, L, width]``: each emotion's mean reply activation minus the neutral replies' mean."""
    texts, labels = read_labelled(TRAIN_PATH)
    means = {}
    classes = (*EMOTIONS, "neutral")
    for done, label in enumerate(classes):
        chosen = [text for text, lab in zip(texts, labels, strict=True) if lab == label]
        acts = reply_means(bundle, chosen)
        means[label] = {site: acts[site].mean(dim=0) for site in EXPRESSION_SITES}
        if progress is not None:
            progress(done + 1, len(classes))
    return {site: torch.stack([means[e][site] - means["neutral"][site] for e in EMOTIONS]) for site in EXPRESSION_SITES}


def expression_scores(bundle: ModelBundle, vectors: dict[Site, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Heads ``[E, L, H]`` and neurons ``[E, L, d_mlp]`` scored by how much their expression shift writes
    along the emotion's expressed direction (the unit ``resid_post`` expression vector of their layer)."""
    resid = vectors["resid_post"]
    units = resid / resid.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    heads = torch.stack([head_contributions(bundle, vectors["attn_z"][e][None], units[e])[0] for e in range(len(EMOTIONS))])
    neurons = torch.stack([neuron_contributions(bundle, vectors["mlp_post"][e][None], units[e])[0] for e in range(len(EMOTIONS))])
    return heads, neurons
