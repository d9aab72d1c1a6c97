"""Causal rankings: what each head and neuron does to the emotion reading when it is switched off.

The paper's ranking asks what *writes* along an emotion's direction; a knockout asks what, when
removed, *changes the output*. On a small model those differ. This module estimates the second for
every head and neuron at once by attribution patching: switching component ``c`` off replaces its
activation ``a_c`` by ``a'_c`` (0, or its mean over neutral prompts) at every position, and to first
order the metric ``M`` moves by ``sum_pos (a'_c - a_c) . dM/da_c``. One forward and one backward
pass per prompt batch give that for every component.

Where the reading is taken: over the reply tokens of an emotional baseline reply, teacher-forced.
The baseline reply is generated once (greedy, as in the evaluation); the prompt plus that reply is
then run again with the same steering, and the reading is the calibrated emotion reading of the
mean ``resid_post`` state over the positions that produced the reply's tokens (the last prompt
token and every reply token but the last). That is what the reading of a generated reply measures,
and what a knockout of the reply changes before any word flips; it is also what the reading was
calibrated on (0 = plain replies, 1 = replies steered toward the emotion).

Baselines (``Baseline``): *steered* (emotion-free prompt, the cache's tuned direction steering toward
the emotion), *asked* (the emotion request in the system prompt) and *continued* (the reply already
begins with an emotional sentence and the model writes on; the reading covers only what it writes).

General harm: the first-order change of the language-model loss (mean next-token cross-entropy over
the real tokens of emotion-free prompts) when the component is switched off.

``tests/test_attribution.py`` checks every estimate against the exact first-order change and a real
ablation on tiny models, and ``python -m emo_core attribution-check`` against real ablations of the
built-in model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F

from emo_core.activations import Progress, StageProgress
from emo_core.arch import Site
from emo_core.causal import HARM_BASE, effect_name, harm_name
from emo_core.generation import Reply, chat_prompt, continuation, encode, padded
from emo_core.interventions import AblationMode, ComponentEdit, Intervention, ResidualAddition, capture, intervene
from emo_core.judge import TRAIN_PATH, read_labelled
from emo_core.models import ModelBundle
from emo_core.reading import READ_SITE, EmotionReading
from emo_core.replay import Recording, record_calls, replay_calls
from emo_core.scenarios import EMOTION_SYSTEM, EMOTIONS, NEUTRAL_SYSTEM, PromptSpec, spread
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit, tuned_settings, tuned_steering

Baseline = Literal["steered", "asked", "continued"]
BASELINES: tuple[Baseline, ...] = ("steered", "asked", "continued")
MODES: tuple[AblationMode, ...] = ("zero", "mean")
KIND_SITES: dict[str, Site] = {"heads": "attn_z", "neurons": "mlp_post"}


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
    return [*shared, *(replace(edit, rows=(i,)) for i, row in enumerate(rows) for edit in row.edits)]


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
    calls = [(list(edits), dict(batch, use_cache=width > 0))]
    if width > 0:
        ids, mask = padded(followed, bundle.tokenizer.pad_token_id, left=False)
        reply = continuation(batch["attention_mask"], ids, mask)
        calls.append(([_for_reply_tokens(edit) for edit in edits], dict(reply, use_cache=True)))
    return calls, read


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
    mean = torch.einsum("rp,rpkd->rkd", read.to(stacked.dtype), stacked)
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


def _effects(
    acts: Sequence[Sequence[torch.Tensor]],
    grads: Sequence[Sequence[torch.Tensor]],
    means: torch.Tensor,
    group: int,
) -> dict[AblationMode, torch.Tensor]:
    """Per row, the first-order change of the metric when each unit is set to 0 or to its mean at every position.

    Args:
        acts, grads: per layer, per call, ``[rows, pos, width]`` activations and the metric's gradient there.
        means: ``[L, width]`` mean activations (mean ablation).
        group: channels per unit (``head_dim`` for heads, 1 for neurons).

    Returns:
        ``{"zero": [rows, L, units], "mean": [rows, L, units]}``.
    """
    zero, mean = [], []
    for layer, (layer_acts, layer_grads) in enumerate(zip(acts, grads, strict=True)):
        ag = sum((a.detach().double() * g.double()).sum(dim=1) for a, g in zip(layer_acts, layer_grads, strict=True))
        g_sum = sum(g.double().sum(dim=1) for g in layer_grads)
        rows = ag.shape[0]
        zero.append((-ag).view(rows, -1, group).sum(-1))
        mean.append((means[layer].to(g_sum) * g_sum - ag).view(rows, -1, group).sum(-1))
    return {"zero": torch.stack(zero, dim=1).float().cpu(), "mean": torch.stack(mean, dim=1).float().cpu()}


def _group(bundle: ModelBundle, kind: str) -> int:
    return bundle.shape.head_dim if kind == "heads" else 1


def reading_attribution(
    bundle: ModelBundle,
    reading: EmotionReading,
    rows: Sequence[ForcedReply],
    weights: torch.Tensor,
    means: dict[str, torch.Tensor],
    shared: Sequence[Intervention] = (),
) -> dict[str, dict[AblationMode, torch.Tensor]]:
    """Estimated change of ``sum_e weights[row, e] * reading_e`` of each row when each head or neuron is switched off.

    Args:
        weights: ``[rows, E]`` which readings the metric combines per row (e.g. one-hot on the row's emotion).
        means: ``{"heads": [L, H*D], "neurons": [L, d_mlp]}`` mean activations.

    Returns:
        ``{kind: {mode: [rows, L, units]}}``: the metric's change (ablated minus baseline); negative lowers it.
    """
    sites = [KIND_SITES[kind] for kind in ("heads", "neurons")]
    with torch.enable_grad():
        states, _, kept = forced_pass(bundle, rows, reading.layers, shared, grad_sites=sites)
        metric = (reading(states) * weights.to(states.device, states.dtype)).sum()
        flat = [t for site in sites for layer_parts in kept[site] for t in layer_parts]
        grads = torch.autograd.grad(metric, flat, allow_unused=True)
    return _split_effects(bundle, kept, flat, grads, means)


def _split_effects(
    bundle: ModelBundle, kept: dict, flat: list[torch.Tensor], grads: Sequence[torch.Tensor | None], means: dict[str, torch.Tensor]
) -> dict[str, dict[AblationMode, torch.Tensor]]:
    by_id = {id(t): (g if g is not None else torch.zeros_like(t)) for t, g in zip(flat, grads, strict=True)}
    out = {}
    for kind, site in KIND_SITES.items():
        acts = kept[site]
        layer_grads = [[by_id[id(t)] for t in parts] for parts in acts]
        out[kind] = _effects(acts, layer_grads, means[kind], _group(bundle, kind))
    return out


def loss_attribution(
    bundle: ModelBundle, prompts: Sequence[str], means: dict[str, torch.Tensor]
) -> tuple[float, int, dict[str, dict[AblationMode, torch.Tensor]]]:
    """Summed next-token loss over the real tokens of ``prompts``, their count, and its first-order change per component.

    Returns:
        ``(loss_sum, n_tokens, {kind: {mode: [L, units]}})``; divide by ``n_tokens`` for the mean loss and its change.
    """
    batch = encode(bundle, prompts)
    sites = [KIND_SITES[kind] for kind in ("heads", "neurons")]
    with torch.enable_grad():
        with capture(bundle, sites, grad=True) as kept:
            logits = bundle.model(**batch).logits
        losses = token_losses(logits, batch)
        total = losses.sum()
        parts = {site: [kept.parts[(site, layer)] for layer in range(bundle.shape.n_layers)] for site in sites}
        flat = [t for site in sites for layer_parts in parts[site] for t in layer_parts]
        grads = torch.autograd.grad(total, flat, allow_unused=True)
    effects = _split_effects(bundle, parts, flat, grads, means)
    summed = {kind: {mode: value.sum(dim=0) for mode, value in modes.items()} for kind, modes in effects.items()}
    return float(total.detach()), len(losses), summed


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (float64 stays float64, so exact tests stay exact)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def token_losses(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The next-token loss of every real token of a left-padded ``batch`` after the first, from its ``[rows, tokens, vocab]``
    logits (vocabulary rows kept contiguous: along a strided dimension the softmax took 5x as long)."""
    valid = (batch["attention_mask"][:, 1:] * batch["attention_mask"][:, :-1]).bool()
    return F.cross_entropy(_wide(logits[:, :-1][valid]), batch["input_ids"][:, 1:][valid], reduction="none")


def lm_loss(bundle: ModelBundle, prompts: Sequence[str], edits: Sequence[Intervention] = ()) -> tuple[float, int]:
    """Summed next-token loss over the real tokens of ``prompts`` (with ``edits`` applied) and the token count."""
    batch = encode(bundle, prompts)
    with torch.inference_mode(), intervene(bundle, *edits):
        logits = bundle.model(**batch).logits
    losses = token_losses(logits, batch)
    return float(losses.sum()), len(losses)


# --- The build stage: causal effects on training prompts, per baseline -------------------------------------------


@dataclass(frozen=True)
class CausalSettings:
    """How many training prompts the causal rankings are estimated on."""

    prompts: int = 8  # per emotion and baseline
    harm_prompts: int = 16
    batch_size: int = 12
    baselines: tuple[Baseline, ...] = BASELINES


def opening_sentences(path: Path, per_emotion: int) -> dict[str, list[str]]:
    """``per_emotion`` labelled sentences of each emotion from a JSON Lines file, spread over the file."""
    texts, labels = read_labelled(path)
    chosen = {}
    for emotion in EMOTIONS:
        pool = [text for text, label in zip(texts, labels, strict=True) if label == emotion]
        chosen[emotion] = pool[:: max(1, len(pool) // per_emotion)][:per_emotion]
    return chosen


def training_openings(per_emotion: int = 4) -> dict[str, list[str]]:
    """Opening sentences of the *continued* baseline at build time: the judge's training sentences (never the evaluation's)."""
    return opening_sentences(TRAIN_PATH, per_emotion)


def baseline_rows(
    kit: SteeringKit,
    steering: pd.DataFrame,
    prompts: Sequence[PromptSpec],
    baseline: Baseline,
    openings: Mapping[str, Sequence[str]] | None = None,
) -> list[Row]:
    """One row per (emotion, prompt) of an emotional baseline on emotion-free ``prompts``.

    *steered*: the tuned direction steering toward the emotion; *asked*: the emotion request as the
    system prompt; *continued*: the reply begins with one of ``openings[emotion]`` (cycled) and the
    model writes on (the opening is part of the prompt text, so only the continuation is generated).
    """
    bundle = kit.bundle
    rows = []
    for emotion in EMOTIONS:
        edits: tuple[Intervention, ...] = ()
        if baseline == "steered":
            edits = tuple(tuned_steering(kit, tuned_settings(steering, "direction", emotion), "direction", emotion))
        for i, p in enumerate(prompts):
            if baseline == "asked":
                text = chat_prompt(bundle, p.user, EMOTION_SYSTEM.format(emotion=emotion))
            else:
                text = chat_prompt(bundle, p.user, NEUTRAL_SYSTEM)
            if baseline == "continued":
                if not openings or not openings.get(emotion):
                    raise ValueError("The continued baseline needs opening sentences for every emotion.")
                text += openings[emotion][i % len(openings[emotion])]
            rows.append(Row(text, emotion, edits, (("baseline", baseline), ("prompt", p.key))))
    return rows


def forced_rows(rows: Sequence[Row], replies: Sequence[Reply]) -> list[ForcedReply]:
    """Teacher-forced twins of generated rows: the same prompt and edits, read over the reply that was generated."""
    return [ForcedReply(row.prompt, reply.token_ids, row.interventions) for row, reply in zip(rows, replies, strict=True)]


def own_effects(
    bundle: ModelBundle,
    reading: EmotionReading,
    rows: Sequence[Row],
    replies: Sequence[Reply],
    means: dict[str, torch.Tensor],
    batch_size: int,
    progress: Progress | None = None,
) -> dict[str, dict[AblationMode, torch.Tensor]]:
    """Per emotion, the mean estimated change of its reading over its rows when each part is switched off: ``[E, L, units]``."""
    forced = forced_rows(rows, replies)
    targets = torch.tensor([EMOTIONS.index(row.emotion) for row in rows])
    sums: dict[str, dict[AblationMode, torch.Tensor]] = {}
    for start in range(0, len(forced), batch_size):
        chunk = slice(start, start + batch_size)
        weights = F.one_hot(targets[chunk], len(EMOTIONS)).float()
        effects = reading_attribution(bundle, reading, forced[chunk], weights, means)
        for kind, modes in effects.items():
            for mode, value in modes.items():
                per_emotion = torch.einsum("re,rlu->elu", weights, value)
                sums.setdefault(kind, {})[mode] = sums.get(kind, {}).get(mode, 0) + per_emotion
        if progress is not None:
            progress(min(start + batch_size, len(forced)), len(forced))
    counts = torch.bincount(targets, minlength=len(EMOTIONS)).clamp(min=1).float()[:, None, None]
    return {kind: {mode: value / counts for mode, value in modes.items()} for kind, modes in sums.items()}


def causal_effects(
    kit: SteeringKit,
    reading: EmotionReading,
    steering: pd.DataFrame,
    means: Mapping[str, torch.Tensor],
    prompts: Sequence[PromptSpec],
    openings: Mapping[str, Sequence[str]],
    settings: CausalSettings = CausalSettings(),
    progress: StageProgress | None = None,
) -> dict[str, torch.Tensor]:
    """The cache entries of the causal rankings, from emotion-free training ``prompts``.

    ``causal.<baseline>.<kind>.<mode>`` ``[E, L, units]``: estimated drop of emotion ``e``'s reading
    (positive = it falls) on the baseline toward ``e`` when the part is switched off; ``causal.harm.<kind>.<mode>``
    ``[L, units]``: estimated rise of the language-model loss on neutral prompts (nats per token);
    ``causal.harm.base`` ``[1]``: that loss with nothing switched off.
    """
    bundle = kit.bundle
    unit_means = {"heads": means["attn_z"], "neurons": means["mlp_post"]}
    picked = spread(prompts, settings.prompts)
    out: dict[str, torch.Tensor] = {}
    for baseline in settings.baselines:
        rows = baseline_rows(kit, steering, picked, baseline, openings)
        stage = None if progress is None else (lambda done, total, b=baseline: progress(f"causal: {b} replies", done, total))
        replies = generate_rows(bundle, rows, SCORING_SETTINGS, progress=stage, desc=f"{baseline} replies")
        stage = None if progress is None else (lambda done, total, b=baseline: progress(f"causal: {b}", done, total))
        effects = own_effects(bundle, reading, rows, replies, unit_means, settings.batch_size, stage)
        for kind, modes in effects.items():
            for mode, value in modes.items():
                out[effect_name(baseline, kind, mode)] = -value
    texts = [chat_prompt(bundle, p.user, NEUTRAL_SYSTEM) for p in spread(prompts, settings.harm_prompts)]
    total, count, harm = 0.0, 0, {}
    for start in range(0, len(texts), settings.batch_size):
        if progress is not None:
            progress("causal: harm", start, len(texts))
        loss, n, effects = loss_attribution(bundle, texts[start : start + settings.batch_size], unit_means)
        total, count = total + loss, count + n
        for kind, modes in effects.items():
            for mode, value in modes.items():
                harm[(kind, mode)] = harm.get((kind, mode), 0) + value
    for (kind, mode), value in harm.items():
        out[harm_name(kind, mode)] = value / count
    out[HARM_BASE] = torch.tensor([total / count])
    return out
