"""Knockout curves: the top-k heads or neurons of a ranking switched off, against k random ones from the same layers.

Measured on the evaluation split only, on three emotional baselines (``baselines.CAUSAL_KINDS``):
*steered* (direction steering toward the emotion), *asked* (the emotion request in the system prompt)
and *continued* (the reply begins with an emotional sentence from ``datasets/continued_openings.jsonl``,
written for this and never fitted on, and the model writes on; only what it writes is read or judged).

Two measures:

- the internal reading (``reading.py``) over the baseline reply, teacher-forced (``forced.py``;
  each knockout is replayed on its recorded baseline row from the lowest layer it touches):
  continuous and cheaper than generating, so it gives the whole curve, k = 1 ... 64, for both rankings
  (the causal one of that baseline, and the paper's ``head_scores``/``neuron_scores``) on every
  baseline. Random controls: each draw is its own matched random set (as many parts in each layer as the
  top-k set, none of them), evaluated on one prompt. The target sets (``CurveSettings.target_ks``: the top 2
  heads and top 4 neurons of the causal ranking) get more draws, their drop of the *other* emotions' readings
  (on the same reply, and on each other emotion's own baseline reply) and their harm (language-model loss on
  neutral evaluation prompts);
- the judge's probability of the target emotion over generated replies, for a few k on one baseline,
  with one reply per prompt per condition (48 prompts by default: 12 cannot tell a knockout from chance),
  every random reply with its own draw.

Every drop is baseline minus knocked-out (positive = the emotion fell), with 95% bootstrap intervals.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from emo_core.attribution import lm_loss, opening_sentences
from emo_core.baselines import CAUSAL_KINDS, Baseline, BaselineKind, baseline_rows
from emo_core.causal import OTHERS_WEIGHT
from emo_core.forced import ForcedReply, forced_recording, forced_replay, forced_rows
from emo_core.generation import Reply
from emo_core.interventions import AblationMode, Intervention, lowest_layer, on_rows
from emo_core.judge import EmotionJudge
from emo_core.models import ModelBundle
from emo_core.parts import KINDS, Component, Kind, knockout, matched_random, top_parts
from emo_core.progress import Progress, StageProgress, stage
from emo_core.reading import EmotionReading
from emo_core.results import Results
from emo_core.scenarios import DATASET_DIR, EMOTIONS, PromptSpec, spread
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows, score_replies
from emo_core.stats import bootstrap_interval, difference_interval
from emo_core.steering import SteeringKit

OPENINGS_PATH = DATASET_DIR / "continued_openings.jsonl"
KS = (1, 2, 4, 8, 16, 32, 64)
RANKINGS = ("causal", "paper")
RANDOM_MULTIPLE = 3  # a top-k set passes when it lowers the emotion at least this many times as much as random sets
BATCH_OVERHEAD_ROWS = 2  # a replayed batch costs about this many rows more than its rows (its calls, its small matrices)
Known = Mapping[BaselineKind, Mapping[tuple[str, str], Reply]]  # baseline -> (prompt, emotion) -> a reply this run already has
NOTHING_KNOWN: Known = MappingProxyType({})


@dataclass(frozen=True)
class CurveSettings:
    """What the curves measure: how many prompts, random draws and judged replies, on which baselines and rankings
    (``bench/README.md`` gives how long the defaults take)."""

    prompts: int = 2  # evaluation prompts per emotion and baseline for the reading curves
    draws: int = 4  # random draws per curve point and emotion (one prompt each; 24 per point over the six emotions)
    target_draws: int = 20  # random draws per emotion for the target sets
    target_ks: Mapping[Kind, int] = field(default_factory=lambda: {"head": 2, "neuron": 4})
    ks: tuple[int, ...] = KS
    baselines: tuple[BaselineKind, ...] = CAUSAL_KINDS
    rankings: tuple[str, ...] = RANKINGS
    mode: AblationMode = "mean"
    harm_prompts: int = 8
    judged_baseline: BaselineKind = "steered"
    judged_prompts: int = 48
    judged: tuple[tuple[Kind, int], ...] = (("neuron", 16),)
    batch_size: int = 32
    bootstrap: int = 2000
    seed: int = 0


def ranked_parts(results: Results, ranking: str, baseline: BaselineKind, kind: Kind, emotion: str, mode: AblationMode, k: int) -> list:
    """The top ``k`` parts of a ranking: ``causal`` (this baseline's, harmful parts excluded) or ``paper``."""
    if ranking == "causal":
        scores = results.causal_scores(baseline, kind, mode)[results.emotion_index(emotion)]
    else:
        scores = results.head_scores(emotion) if kind == "head" else results.neuron_scores(emotion)
    return [component for component, _ in top_parts(scores, kind, k)]


def evaluation_openings() -> dict[str, list[str]]:
    """The *continued* baseline's opening sentences at evaluation time (outside every training set)."""
    return opening_sentences(OPENINGS_PATH, per_emotion=100)


def _rows(kit: SteeringKit, kind: BaselineKind, prompts: Sequence[PromptSpec]) -> list[Row]:
    """The baseline's rows on evaluation ``prompts`` (emotion-major), with the evaluation's openings for *continued*."""
    return baseline_rows(Baseline(kind), kit, prompts, openings=evaluation_openings() if kind == "continued" else None)


def baseline_replies(bundle: ModelBundle, rows: Sequence[Row], known: Known, baseline: BaselineKind) -> list[Reply]:
    """Replies to a baseline's rows: the ones this run already generated for the same prompt, emotion and baseline
    (the steering evaluation's direction-steered and asked replies are the *steered* and *asked* rows), the rest generated."""
    have = known.get(baseline, {})
    missing = [row for row in rows if (row.prompt, row.emotion) not in have]
    fresh = generate_rows(bundle, missing, SCORING_SETTINGS, desc=f"{baseline} baselines") if missing else []
    replies = {**have, **{(row.prompt, row.emotion): reply for row, reply in zip(missing, fresh, strict=True)}}
    return [replies[(row.prompt, row.emotion)] for row in rows]


@dataclass
class _Plan:
    """Knockouts to read, each on one teacher-forced baseline row, and where its reading goes."""

    bases: list[int] = field(default_factory=list)
    changes: list[tuple[Intervention, ...]] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)

    def add(self, base: int, change: Sequence[Intervention], key: tuple) -> None:
        self.bases.append(base)
        self.changes.append(tuple(change))
        self.keys.append(key)


def _batches(lows: Sequence[int], top: int, batch_size: int) -> list[tuple[int, int]]:
    """Split rows sorted by lowest changed layer into ``[start, end)`` batches of at most ``batch_size`` rows that re-run
    the fewest row-layers: a batch runs from its first row's layer to ``top``, and each costs about ``BATCH_OVERHEAD_ROWS``
    more rows for its calls."""
    best = [0.0] + [float("inf")] * len(lows)
    cut = [0] * (len(lows) + 1)
    for end in range(1, len(lows) + 1):
        for start in range(max(0, end - batch_size), end):
            cost = best[start] + (top - lows[start] + 1) * (end - start + BATCH_OVERHEAD_ROWS)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    bounds, end = [], len(lows)
    while end > 0:
        bounds.append((cut[end], end))
        end = cut[end]
    return bounds[::-1]


def _readings(
    bundle: ModelBundle, reading: EmotionReading, base_rows: Sequence[ForcedReply], plan: _Plan, batch_size: int, progress: Progress | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Readings ``[bases, E]`` of the baseline rows and ``[knockouts, E]`` of the planned knockouts.

    Each baseline row is recorded once and its knockouts replayed on it (``forced.forced_replay``), in batches
    of similar lowest layer (``_batches``), so a batch re-runs only the layers from its lowest one up to the reading's.
    """
    adapter = bundle.adapter
    base = torch.empty(len(base_rows), len(EMOTIONS), dtype=reading.units.dtype)
    out = torch.empty(len(plan.changes), len(EMOTIONS), dtype=reading.units.dtype)
    owned: dict[int, list[int]] = {}
    for i, owner in enumerate(plan.bases):
        owned.setdefault(owner, []).append(i)
    highest = max(reading.layers)
    done = 0
    for b, row in enumerate(base_rows):
        recording = forced_recording(bundle, row)
        base[b] = reading(forced_replay(bundle, recording, [], 1, reading.layers))[0]
        lows = {i: lowest_layer(adapter, plan.changes[i]) for i in owned.get(b, [])}
        for i, low in lows.items():
            if low is None or low > highest:  # parts above the reading's layers cannot move it: exactly the baseline
                out[i] = base[b]
        members = sorted((i for i, low in lows.items() if low is not None and low <= highest), key=lows.get)
        for start, end in _batches([lows[i] for i in members], highest, batch_size):
            chunk = members[start:end]
            changes = [on_rows(edit, (j,)) for j, i in enumerate(chunk) for edit in plan.changes[i]]
            out[chunk] = reading(forced_replay(bundle, recording, changes, len(chunk), reading.layers))
            done += len(chunk)
            if progress is not None:
                progress(done, len(plan.changes))
        done += len(lows) - len(members)
    return base, out


def _summary(top: np.ndarray, control: np.ndarray, settings: CurveSettings, paired: bool = False) -> dict:
    entry = {
        "top_drop": float(top.mean()),
        "top_ci95": bootstrap_interval(top, settings.bootstrap, settings.seed),
        "random_drop": float(control.mean()),
        "random_ci95": bootstrap_interval(control, settings.bootstrap, settings.seed),
        "difference_ci95": difference_interval(top, control, settings.bootstrap, settings.seed, paired),
        "n_top": len(top),
        "n_random": len(control),
    }
    entry["ratio"] = entry["top_drop"] / entry["random_drop"] if entry["random_drop"] > 0 else None
    # Passes when it lowers the emotion RANDOM_MULTIPLE times as much as random sets (a random set that raises the emotion
    # counts as 0), with its own interval and the difference's interval above zero.
    entry["three_times_random"] = bool(
        entry["top_drop"] >= RANDOM_MULTIPLE * max(entry["random_drop"], 0.0)
        and entry["top_ci95"][0] > 0
        and entry["difference_ci95"][0] > 0
    )
    return entry


def reading_curves(
    bundle: ModelBundle,
    results: Results,
    kit: SteeringKit,
    reading: EmotionReading,
    prompts: Sequence[PromptSpec],
    baseline: BaselineKind,
    settings: CurveSettings,
    progress: Progress | None = None,
    known: Known = NOTHING_KNOWN,
) -> dict:
    """Reading curves of one baseline: per ranking, kind, k and emotion, the top-k drop vs matched random drops.

    Also, for the target sets, the mean drop of the other emotions' readings on the same reply
    (``others_same``) and on each other emotion's own baseline reply (``others_own``).
    """
    rng = random.Random(f"{settings.seed}-{baseline}")
    picked = spread(prompts, settings.prompts)
    rows = _rows(kit, baseline, picked)
    base_rows = forced_rows(rows, baseline_replies(bundle, rows, known, baseline))  # emotion-major: row e * P + p
    n = len(picked)
    means = results.neutral_means
    plan = _Plan()
    sets: dict[tuple, list[Component]] = {}
    for e, emotion in enumerate(EMOTIONS):
        for ranking in settings.rankings:
            for kind in KINDS:
                target = ranking == "causal" and kind in settings.target_ks
                ks = sorted({*settings.ks, *((settings.target_ks[kind],) if target else ())})
                for k in ks:
                    top = ranked_parts(results, ranking, baseline, kind, emotion, settings.mode, k)
                    if not top:
                        continue
                    key = (emotion, ranking, kind, k)
                    sets[key] = top
                    for p in range(n):
                        plan.add(e * n + p, knockout(top, settings.mode, means), ("top", key, p))
                    is_target = target and k == settings.target_ks[kind]
                    for d in range(settings.target_draws if is_target else settings.draws):
                        control = matched_random(top, results.shape, rng)
                        plan.add(e * n + d % n, knockout(control, settings.mode, means), ("random", key, d % n))
                    if is_target:
                        for f in range(len(EMOTIONS)):
                            if f != e:
                                for p in range(n):
                                    plan.add(f * n + p, knockout(top, settings.mode, means), ("cross", key, f, p))
    base, values = _readings(bundle, reading, base_rows, plan, settings.batch_size, progress)  # [rows, E]
    top_drops: dict[tuple, list] = {}
    random_drops: dict[tuple, list] = {}
    others_same: dict[tuple, list] = {}
    others_own: dict[tuple, list] = {}
    for key, value in zip(plan.keys, values, strict=True):
        emotion = key[1][0]
        e = EMOTIONS.index(emotion)
        if key[0] == "cross":
            f, p = key[2], key[3]
            others_own.setdefault(key[1], []).append(float(base[f * n + p, f] - value[f]))
            continue
        p = key[2]
        drop = base[e * n + p] - value  # [E]
        (top_drops if key[0] == "top" else random_drops).setdefault(key[1], []).append(float(drop[e]))
        if key[0] == "top":
            others_same.setdefault(key[1], []).append(float((drop.sum() - drop[e]) / (len(EMOTIONS) - 1)))
    curves: dict = {
        "n_prompts": n,
        "baseline_reading": {emotion: float(base[e * n : (e + 1) * n, e].mean()) for e, emotion in enumerate(EMOTIONS)},
    }
    for key, top in top_drops.items():
        emotion, ranking, kind, k = key
        entry = _summary(np.array(top), np.array(random_drops[key]), settings)
        entry["others_same"] = float(np.mean(others_same[key]))
        entry["units"] = [[c.layer, c.index] for c in sets[key]]
        if key in others_own:
            entry["others_own"] = float(np.mean(others_own[key]))
            entry["others_own_ci95"] = bootstrap_interval(others_own[key], settings.bootstrap, settings.seed)
            entry["specificity"] = entry["top_drop"] / entry["others_own"] if entry["others_own"] > 0 else None
            # Specific: it lowers its own emotion at least OTHERS_WEIGHT times as much as the others' readings on average.
            entry["specific"] = bool(entry["top_drop"] > 0 and entry["top_drop"] >= OTHERS_WEIGHT * max(entry["others_own"], 0.0))
        curves.setdefault(ranking, {}).setdefault(kind, {}).setdefault(str(k), {})[emotion] = entry
    return curves


def harm_report(
    bundle: ModelBundle, results: Results, prompts: Sequence[PromptSpec], sets: Mapping[str, Sequence[Component]], mode: AblationMode
) -> dict:
    """Relative rise of the language-model loss on neutral prompts when each named set of parts is switched off."""
    plain = Baseline("plain")
    texts = [plain.prompt(bundle, p.user) for p in prompts]
    total, count = lm_loss(bundle, texts)
    base = total / count
    out: dict = {"base_loss": base}
    seen: dict[tuple, float] = {}
    for name, parts in sets.items():
        key = tuple(sorted(parts))
        if key not in seen:
            seen[key] = lm_loss(bundle, texts, knockout(parts, mode, results.neutral_means))[0] / count
        out[name] = {"loss": seen[key], "relative_rise": seen[key] / base - 1}
    return out


def judged_knockouts(
    bundle: ModelBundle,
    results: Results,
    kit: SteeringKit,
    judge: EmotionJudge,
    prompts: Sequence[PromptSpec],
    settings: CurveSettings,
    progress: Progress | None = None,
    known: Known = NOTHING_KNOWN,
) -> dict:
    """The judge's probability of the target emotion: baseline replies vs top-k and random-k knockouts, one reply per prompt each."""
    rng = random.Random(f"{settings.seed}-judged")
    baseline = settings.judged_baseline
    picked = spread(prompts, settings.judged_prompts)
    base_rows = _rows(kit, baseline, picked)
    n = len(picked)
    means = results.neutral_means
    rows: list[Row] = []
    keys: list[tuple] = []
    for e, emotion in enumerate(EMOTIONS):
        for kind, k in settings.judged:
            top = ranked_parts(results, "causal", baseline, kind, emotion, settings.mode, k)
            for p in range(n):
                row = base_rows[e * n + p]
                control = matched_random(top, results.shape, rng)
                for which, parts in (("top", top), ("random", control)):
                    rows.append(Row(row.prompt, emotion, (*row.interventions, *knockout(parts, settings.mode, means))))
                    keys.append((which, (emotion, kind, k, p)))
    replies = baseline_replies(bundle, base_rows, known, baseline)
    replies += generate_rows(bundle, rows, SCORING_SETTINGS, progress=progress, desc="judged knockouts")
    scores = score_replies(judge, [*base_rows, *rows], replies)
    p_target = scores["p_target"].to_numpy()
    degenerate = scores["degenerate"].to_numpy()
    base = p_target[: len(base_rows)]
    drops: dict[tuple, dict[str, list]] = {}
    for (which, key), value, bad in zip(keys, p_target[len(base_rows) :], degenerate[len(base_rows) :], strict=True):
        emotion, kind, k, p = key
        entry = drops.setdefault((emotion, kind, k), {"top": [], "random": [], "degenerate_top": []})
        entry[which].append(float(base[EMOTIONS.index(emotion) * n + p] - value))
        if which == "top":
            entry["degenerate_top"].append(bool(bad))
    out: dict = {
        "baseline": baseline,
        "n_prompts": n,
        "baseline_p_target": {emotion: float(base[e * n : (e + 1) * n].mean()) for e, emotion in enumerate(EMOTIONS)},
    }
    for (emotion, kind, k), entry in drops.items():
        summary = _summary(np.array(entry["top"]), np.array(entry["random"]), settings, paired=True)
        summary["degenerate_top"] = float(np.mean(entry["degenerate_top"]))
        out.setdefault(kind, {}).setdefault(str(k), {})[emotion] = summary
    return out


def knockout_curves(
    bundle: ModelBundle,
    results: Results,
    judge: EmotionJudge,
    prompts: Sequence[PromptSpec],
    settings: CurveSettings = CurveSettings(),
    progress: StageProgress | None = None,
    known: Known = NOTHING_KNOWN,
) -> dict:
    """``ablation.curves`` of the report: reading curves per baseline, target-set harm, and judged knockouts (baseline
    replies the run already has, in ``known``, are not generated again)."""
    kit = results.steering_kit(bundle)
    reading = results.reading()
    report: dict = {"mode": settings.mode, "ks": list(settings.ks), "reading": {}}
    for baseline in settings.baselines:
        report["reading"][baseline] = reading_curves(
            bundle, results, kit, reading, prompts, baseline, settings, stage(progress, f"curves: {baseline}"), known
        )
    harm_sets: dict[str, list[Component]] = {}
    for emotion in EMOTIONS:
        for baseline in settings.baselines:
            for kind, k in settings.target_ks.items():
                harm_sets[f"{baseline}/{emotion}/{kind}/{k}"] = ranked_parts(results, "causal", baseline, kind, emotion, settings.mode, k)
        for kind, k in settings.judged:
            parts = ranked_parts(results, "causal", settings.judged_baseline, kind, emotion, settings.mode, k)
            harm_sets[f"{settings.judged_baseline}/{emotion}/{kind}/{k}"] = parts
    report["harm"] = harm_report(bundle, results, spread(prompts, settings.harm_prompts), harm_sets, settings.mode)
    if settings.judged:
        report["judged"] = judged_knockouts(bundle, results, kit, judge, prompts, settings, stage(progress, "curves: judged"), known)
    return report
