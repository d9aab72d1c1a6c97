"""Teacher-forced passes: a prompt and a given reply run through the model as generation would run them.

A reply's emotion is read (``reading.py``) over the states that produced its tokens. To measure what a change does to
that reading without generating again, the prompt and the reply that was generated are fed back in two calls over one
KV cache (the prompt as generation's prefill, the reply as its decode steps), with the same edits, and the reading is
taken over the positions that produced the reply: the last prompt token and every reply token but the last.
``forced_recording`` and ``forced_replay`` do the same over a recording (``replay.py``), so that many knockouts of one
reply re-run only the layers they can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from emo_core.arch import Site
from emo_core.generation import Reply, continuation, encode, padded
from emo_core.interventions import ComponentEdit, Intervention, ResidualAddition, capture, intervene, on_rows
from emo_core.models import ModelBundle
from emo_core.reading import READ_SITE
from emo_core.replay import Recording, record_calls, replay_calls
from emo_core.scoring import Row


@dataclass(frozen=True)
class ForcedReply:
    """One teacher-forced row: a templated prompt, the reply tokens to read over, and the row's own edits.

    For a *continued* baseline the prompt text ends with the reply's opening sentence, so only what
    the model wrote after it is read.
    """

    prompt: str
    tokens: tuple[int, ...]
    edits: tuple[Intervention, ...] = ()


def _for_reply_tokens(edit: Intervention) -> Intervention:
    """An edit as it acts on a block of reply tokens: "last position" steering steers every generated token."""
    if isinstance(edit, ResidualAddition | ComponentEdit) and edit.positions == "last":
        return replace(edit, positions="all")
    return edit


def _row_edits(rows: Sequence[ForcedReply], shared: Sequence[Intervention]) -> list[Intervention]:
    return [*shared, *(on_rows(edit, (i,)) for i, row in enumerate(rows) for edit in row.edits)]


def _forced_calls(
    bundle: ModelBundle, rows: Sequence[ForcedReply], edits: Sequence[Intervention]
) -> tuple[list[tuple[list[Intervention], dict]], torch.Tensor]:
    """``forced_pass``'s calls as ``(edits, model inputs)``, and ``[rows, positions]`` weights of the positions it reads."""
    batch = encode(bundle, [row.prompt for row in rows])
    device = batch["input_ids"].device
    prompt_len = batch["input_ids"].shape[1]
    followed = [list(row.tokens[:-1]) for row in rows]  # the reply call feeds every token but the last
    width = max(len(ids) for ids in followed)
    read = torch.zeros(len(rows), prompt_len + width, device=device)
    for i, row in enumerate(rows):
        read[i, prompt_len - 1 : prompt_len + max(len(row.tokens), 1) - 1] = 1.0  # the states that produced the reply
    read = read / read.sum(dim=1, keepdim=True)
    return generation_calls(bundle, batch, followed, edits), read


def generation_calls(
    bundle: ModelBundle, batch: dict[str, torch.Tensor], followed: Sequence[Sequence[int]], edits: Sequence[Intervention]
) -> list[tuple[list[Intervention], dict]]:
    """Model calls, as ``(edits, inputs)``, that run the encoded prompts ``batch`` as generation's prefill and then each row's
    ``followed`` tokens (right-padded) as its decode steps over one KV cache: the prompt call applies ``edits`` as they are,
    the reply call applies "last position" steering to every token, as decoding does. No reply call without tokens."""
    width = max((len(ids) for ids in followed), default=0)
    calls = [(list(edits), dict(batch, use_cache=width > 0))]
    if width > 0:
        ids, mask = padded(followed, bundle.tokenizer.pad_token_id, left=False)
        reply = continuation(batch["attention_mask"], ids, mask)
        calls.append(([_for_reply_tokens(edit) for edit in edits], dict(reply, use_cache=True)))
    return calls


def forced_pass(
    bundle: ModelBundle,
    rows: Sequence[ForcedReply],
    layers: Sequence[int],
    shared: Sequence[Intervention] = (),
    grad_sites: Sequence[Site] = (),
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Run prompts then their replies (two calls over one KV cache, as generation does) and read the reply states.

    The prompt call applies every edit as generation's prefill does; the reply call applies "last
    position" steering to every reply token, as generation's decode steps do.

    Args:
        layers: layers whose ``resid_post`` states are read.
        shared: edits for every row (each row's own edits come with it).
        grad_sites: sites to keep in the autograd graph at every layer (run under ``torch.enable_grad``).

    Returns:
        ``states`` ``[rows, len(layers), d_model]`` (the mean over the read positions, in the graph when
        gradients are on), ``weights`` ``[rows, positions]`` (which positions of the two calls were read,
        prompt call first), and the grad captures: ``{site: list of per-call tensors per layer}``.
    """
    calls, read = _forced_calls(bundle, rows, _row_edits(rows, shared))
    n_layers = bundle.shape.n_layers
    grad = bool(grad_sites)
    read_parts: list[list[torch.Tensor]] = []
    kept: dict[Site, list[list[torch.Tensor]]] = {site: [[] for _ in range(n_layers)] for site in grad_sites}
    cache = None
    with nullcontext() if grad else torch.inference_mode():
        for call_edits, inputs in calls:
            # Captures enter after the edits, as generation's observed states do: they see what the next part receives.
            with (
                intervene(bundle, *call_edits),
                capture(bundle, [READ_SITE], layers=layers, grad=grad) as states,
                capture(bundle, list(grad_sites), layers=range(n_layers), grad=True) as captured,
            ):
                cache = bundle.model(**inputs, cache=cache, logits_to_keep=1).cache
            read_parts.append(torch.stack([states[(READ_SITE, layer)] for layer in layers], dim=2))  # [rows, pos, k, d]
            for site in grad_sites:
                for layer in range(n_layers):
                    kept[site][layer].extend(captured.parts[(site, layer)])
    stacked = torch.cat(read_parts, dim=1)
    mean = torch.einsum("rp,rpkd->rkd", read.to(stacked), stacked)  # captured states may sit on another device
    grads = {site: kept[site] for site in grad_sites}
    return mean, read, grads


def forced_recording(bundle: ModelBundle, row: ForcedReply) -> Recording:
    """``forced_pass`` of one row, recorded layer by layer so that changes on top of it can be replayed (``forced_replay``)."""
    calls, _ = _forced_calls(bundle, [row], row.edits)
    return record_calls(bundle, calls)


def forced_replay(
    bundle: ModelBundle, recording: Recording, changes: Sequence[Intervention], rows: int, layers: Sequence[int]
) -> torch.Tensor:
    """``[rows, len(layers), d_model]``: what ``forced_pass`` reads of the recorded row with ``changes`` on top (each with its
    own ``rows``), re-running only the layers they can reach. With no changes, the recorded row's own reading."""
    per_call = [list(changes), [_for_reply_tokens(change) for change in changes]][: len(recording.calls)]
    states = replay_calls(bundle, recording, per_call, rows, layers)
    return torch.cat([states[0][:, -1:], *states[1:]], dim=1).mean(dim=1)  # the last prompt token and the fed reply tokens


def forced_rows(rows: Sequence[Row], replies: Sequence[Reply]) -> list[ForcedReply]:
    """Teacher-forced twins of generated rows: the same prompt and edits, read over the reply that was generated."""
    return [ForcedReply(row.prompt, reply.token_ids, row.interventions) for row, reply in zip(rows, replies, strict=True)]
