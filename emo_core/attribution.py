"""Causal effects: what switching each head and neuron off does to the emotion reading, estimated all at once.

The paper's ranking asks what *writes* along an emotion's direction; a knockout asks what, when
removed, *changes the output*. On a small model those differ. This module estimates the second for
every head and neuron at once by attribution patching: switching component ``c`` off replaces its
activation ``a_c`` by ``a'_c`` (0, or its mean over neutral prompts) at every position, and to first
order the metric ``M`` moves by ``sum_pos (a'_c - a_c) . dM/da_c``. One forward and one backward
pass per prompt batch give that for every component.

The metric is the calibrated emotion reading over an emotional baseline reply (``baselines.py``: *steered*,
*asked* or *continued*), teacher-forced (``forced.py``): what a knockout of the reply changes before any word
flips, and what the reading was calibrated on (0 = plain replies, 1 = replies steered toward the emotion).
General harm is the first-order change of the language-model loss (mean next-token cross-entropy over the
real tokens of emotion-free prompts) when the component is switched off.

``tests/test_attribution.py`` checks every estimate against the exact first-order change and real
ablations on tiny models; ``causal.py`` turns the stored estimates into rankings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from emo_core.arch import Site
from emo_core.baselines import CAUSAL_KINDS, Baseline, BaselineKind, baseline_rows
from emo_core.causal import HARM_BASE, effect_name, harm_name
from emo_core.forced import ForcedReply, forced_pass, forced_rows
from emo_core.generation import Reply, encode
from emo_core.interventions import AblationMode, Intervention, capture, intervene
from emo_core.judge import TRAIN_PATH, read_labelled
from emo_core.models import ModelBundle
from emo_core.parts import KINDS, Kind, NeutralMeans
from emo_core.progress import Progress, StageProgress, stage
from emo_core.reading import EmotionReading
from emo_core.scenarios import EMOTIONS, PromptSpec, spread
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit

MODES: tuple[AblationMode, ...] = ("zero", "mean")
KIND_SITES: dict[Kind, Site] = {"head": "attn_z", "neuron": "mlp_post"}
Effects = dict[Kind, dict[AblationMode, torch.Tensor]]  # kind -> mode -> [rows (or E), L, units]


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


def _group(bundle: ModelBundle, kind: Kind) -> int:
    return bundle.shape.head_dim if kind == "head" else 1


def reading_attribution(
    bundle: ModelBundle,
    reading: EmotionReading,
    rows: Sequence[ForcedReply],
    weights: torch.Tensor,
    means: NeutralMeans,
    shared: Sequence[Intervention] = (),
) -> Effects:
    """Estimated change of ``sum_e weights[row, e] * reading_e`` of each row when each head or neuron is switched off.

    Args:
        weights: ``[rows, E]`` which readings the metric combines per row (e.g. one-hot on the row's emotion).
        means: the parts' mean activations (for mean ablation).

    Returns:
        ``{kind: {mode: [rows, L, units]}}``: the metric's change (ablated minus baseline); negative lowers it.
    """
    sites = [KIND_SITES[kind] for kind in KINDS]
    with torch.enable_grad():
        states, _, kept = forced_pass(bundle, rows, reading.layers, shared, grad_sites=sites)
        metric = (reading(states) * weights.to(states.device, states.dtype)).sum()
        flat = [t for site in sites for layer_parts in kept[site] for t in layer_parts]
        grads = torch.autograd.grad(metric, flat, allow_unused=True)
    return _split_effects(bundle, kept, flat, grads, means)


def _split_effects(
    bundle: ModelBundle, kept: dict, flat: list[torch.Tensor], grads: Sequence[torch.Tensor | None], means: NeutralMeans
) -> Effects:
    by_id = {id(t): (g if g is not None else torch.zeros_like(t)) for t, g in zip(flat, grads, strict=True)}
    out = {}
    for kind, site in KIND_SITES.items():
        acts = kept[site]
        layer_grads = [[by_id[id(t)] for t in parts] for parts in acts]
        out[kind] = _effects(acts, layer_grads, means.of(kind), _group(bundle, kind))
    return out


def loss_attribution(bundle: ModelBundle, prompts: Sequence[str], means: NeutralMeans) -> tuple[float, int, Effects]:
    """Summed next-token loss over the real tokens of ``prompts``, their count, and its first-order change per component.

    Returns:
        ``(loss_sum, n_tokens, {kind: {mode: [L, units]}})``; divide by ``n_tokens`` for the mean loss and its change.
    """
    batch = encode(bundle, prompts)
    sites = [KIND_SITES[kind] for kind in KINDS]
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
    logits (vocabulary rows kept contiguous: the softmax along a strided dimension is several times slower)."""
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
    """How many training prompts the causal rankings are estimated on, and on which baselines."""

    prompts: int = 8  # per emotion and baseline
    harm_prompts: int = 16
    batch_size: int = 12
    baselines: tuple[BaselineKind, ...] = CAUSAL_KINDS


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


def own_effects(
    bundle: ModelBundle,
    reading: EmotionReading,
    rows: Sequence[Row],
    replies: Sequence[Reply],
    means: NeutralMeans,
    batch_size: int,
    progress: Progress | None = None,
) -> Effects:
    """Per emotion, the mean estimated change of its reading over its rows when each part is switched off: ``[E, L, units]``."""
    forced = forced_rows(rows, replies)
    targets = torch.tensor([EMOTIONS.index(row.emotion) for row in rows])
    sums: Effects = {}
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
    means: NeutralMeans,
    prompts: Sequence[PromptSpec],
    openings: Mapping[str, Sequence[str]],
    settings: CausalSettings = CausalSettings(),
    progress: StageProgress | None = None,
) -> dict[str, torch.Tensor]:
    """The cache entries of the causal rankings, from emotion-free training ``prompts`` (``kit`` carries the tuned
    direction steering of the *steered* baseline).

    ``causal.<baseline>.<kind>s.<mode>`` ``[E, L, units]``: estimated drop of emotion ``e``'s reading
    (positive = it falls) on the baseline toward ``e`` when the part is switched off; ``causal.harm.<kind>s.<mode>``
    ``[L, units]``: estimated rise of the language-model loss on neutral prompts (nats per token);
    ``causal.harm.base`` ``[1]``: that loss with nothing switched off.
    """
    bundle = kit.bundle
    picked = spread(prompts, settings.prompts)
    out: dict[str, torch.Tensor] = {}
    for kind in settings.baselines:
        rows = baseline_rows(Baseline(kind), kit, picked, openings=openings)
        replies = generate_rows(bundle, rows, SCORING_SETTINGS, progress=stage(progress, f"causal: {kind} replies"), desc=f"{kind} replies")
        effects = own_effects(bundle, reading, rows, replies, means, settings.batch_size, stage(progress, f"causal: {kind}"))
        for part, modes in effects.items():
            for mode, value in modes.items():
                out[effect_name(kind, part, mode)] = -value
    plain = Baseline("plain")
    texts = [plain.prompt(bundle, p.user) for p in spread(prompts, settings.harm_prompts)]
    total, count, harm = 0.0, 0, {}
    for start in range(0, len(texts), settings.batch_size):
        if progress is not None:
            progress("causal: harm", start, len(texts))
        loss, n, effects = loss_attribution(bundle, texts[start : start + settings.batch_size], means)
        total, count = total + loss, count + n
        for part, modes in effects.items():
            for mode, value in modes.items():
                harm[(part, mode)] = harm.get((part, mode), 0) + value
    for (part, mode), value in harm.items():
        out[harm_name(part, mode)] = value / count
    out[HARM_BASE] = torch.tensor([total / count])
    return out
