"""Prepared knockouts: per emotion, the baseline and the knockout a class is shown first, chosen on training scenarios.

A knockout is visible only on a reply that carries the emotion firmly: on a weak one, random parts flip it as often as
the right ones. So ``build`` tries, per emotion, a few baselines (direction steering at its tuned strength and stronger,
circuit steering at its tuned strength) and a few knockouts (the top heads and/or neurons of the causal ranking), each
on the same training prompts next to a matched random set drawn fresh per prompt, and the judge reads every reply,
written as the page writes them (48 tokens, classroom-safe).

A candidate's score is the share of carried baseline replies its knockout moves off the emotion minus the same share
for the random sets (``knockout.Tally``). It is eligible when its baseline carries the emotion in at least half the
prompts and at most one in eight of its baseline and of its knocked-out replies are degenerate (two of 16 prompts: with
so few, one or two broken replies are within noise of the 5% the evaluation holds them to); the best eligible candidate
is chosen (ties: fewer parts, then the weaker baseline). When none is eligible the best one is kept, marked so, and the
page says it. The cache stores the measured candidates; ``choose`` applies this rule when they are read, so the rule
lives in code and the measurements in the cache.

Parts a circuit-steered baseline pushes are never in its knockout (``Baseline.pushes``): switching them off would only
undo the steering. The whole table of candidates is stored as the cache table ``prepared``; ``evaluate`` reports the
chosen ones on the evaluation split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from emo_core.baselines import Baseline, SteeringMethod
from emo_core.causal import stored_scores
from emo_core.parts import Component, Kind, NeutralMeans, count, parse_tokens, top_parts
from emo_core.scenarios import EMOTIONS, PromptSpec

if TYPE_CHECKING:  # the app's pages read prepared knockouts without loading torch; building and measuring them need it
    import torch

    from emo_core.generation import GenerationSettings
    from emo_core.interventions import AblationMode
    from emo_core.judge import EmotionJudge
    from emo_core.knockout import Tally
    from emo_core.models import ModelBundle
    from emo_core.progress import Progress
    from emo_core.steering import SteeringKit


# What a class should see on the evaluation split (issue 21): the knockout removes the emotion from at least 70% of the
# replies that carried it, random sets from at most 20%, and at most 5% of knocked-out replies are degenerate.
TARGET_REMOVED, TARGET_RANDOM, TARGET_DEGENERATE = 0.7, 0.2, 0.05

Ranking = Callable[[str, Kind], Sequence[Component]]  # (emotion, kind) -> every eligible part of that kind, best first


@dataclass(frozen=True)
class PrepareSettings:
    """The candidates ``build`` tries and how it judges them."""

    prompts: int = 16  # training prompts per candidate
    max_new_tokens: int = 48  # as long as the Knockout page's replies: longer replies drift and break more often
    baselines: tuple[tuple[SteeringMethod, float], ...] = (("direction", 1.0), ("direction", 1.5), ("circuit", 1.0))  # x tuned
    sizes: tuple[tuple[int, int], ...] = ((0, 64), (0, 128), (8, 64))  # (heads, neurons) from the top of the causal ranking
    mode: AblationMode = "mean"
    min_carried: float = 0.5  # share of prompts whose baseline reply must carry the emotion
    max_degenerate: float = 0.125  # share of baseline and of knocked-out replies that may be degenerate
    seed: int = 0


@dataclass(frozen=True)
class PreparedKnockout:
    """One emotion's chosen baseline and knockout, with what it did on the training prompts."""

    emotion: str
    baseline: Baseline
    factor: float  # the baseline's strength over the tuned one
    parts: tuple[Component, ...]
    mode: AblationMode
    prompts: int
    carried: int
    removed: float  # share of carried replies the knockout moved off the emotion
    random_removed: float
    degenerate: float  # share of knocked-out replies that are degenerate
    eligible: bool

    @property
    def size(self) -> str:
        """ "8 heads and 64 neurons"."""
        heads = sum(c.kind == "head" for c in self.parts)
        neurons = len(self.parts) - heads
        return " and ".join(count(n, noun) for n, noun in ((heads, "head"), (neurons, "neuron")) if n)

    @classmethod
    def from_row(cls, row: pd.Series) -> PreparedKnockout:
        """From a row of ``choose``'s table."""
        parts, problems = parse_tokens(str(row["parts"]).split())
        if problems:
            raise ValueError(f"The prepared knockout of {row['emotion']} names parts it cannot read: {', '.join(problems)[:80]}.")
        return cls(
            str(row["emotion"]),
            Baseline("steered", row["method"], float(row["strength"])),
            float(row["factor"]),
            tuple(parts),
            row["mode"],
            int(row["prompts"]),
            int(row["carried"]),
            float(row["removed"]),
            float(row["random_removed"]),
            float(row["degenerate"]),
            bool(row["eligible"]),
        )


def causal_ranking(tensors: Mapping[str, torch.Tensor], baseline: str = "steered", mode: AblationMode = "mean") -> Ranking:
    """The ranking prepared knockouts take their parts from: the causal ranking of a cache's (or a build's own) tensors,
    harmful parts left out."""
    scores = {kind: stored_scores(tensors, baseline, kind, mode) for kind in ("head", "neuron")}

    def ranked(emotion: str, kind: Kind) -> list[Component]:
        return [c for c, score in top_parts(scores[kind][EMOTIONS.index(emotion)], kind) if score != float("-inf")]

    return ranked


def candidate_parts(ranking: Ranking, emotion: str, heads: int, neurons: int, excluded: frozenset[Component]) -> list[Component]:
    """The top ``heads`` heads, then the top ``neurons`` neurons, of ``emotion``'s ranking, leaving out ``excluded``."""
    chosen: list[Component] = []
    for kind, k in (("head", heads), ("neuron", neurons)):
        chosen += [c for c in ranking(emotion, kind) if c not in excluded][:k]
    return chosen


def prepare_knockouts(
    kit: SteeringKit,
    judge: EmotionJudge,
    ranking: Ranking,
    means: NeutralMeans,
    prompts: Sequence[PromptSpec],
    settings: PrepareSettings = PrepareSettings(),
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Every candidate on ``prompts`` (training ones), one row each, as the cache table ``prepared`` stores it.

    Columns: emotion, method, factor, strength, heads, neurons, mode, parts (tokens), prompts, carried, removed,
    random_removed, degenerate, random_degenerate, baseline_degenerate, score.
    """
    from emo_core.generation import GenerationSettings
    from emo_core.knockout import comparison_rows, tally
    from emo_core.scoring import SCORING_SETTINGS, generate_rows, score_replies

    bundle = kit.bundle
    users = [p.user for p in prompts[: settings.prompts]]
    generation = GenerationSettings(**{**vars(SCORING_SETTINGS), "max_new_tokens": settings.max_new_tokens, "classroom_safe": True})
    rows, keys = [], []
    for emotion in EMOTIONS:
        for method, factor in settings.baselines:
            if method == "circuit" and emotion not in kit.circuits:
                continue
            baseline = Baseline("steered", method, factor * kit.settings(method, emotion)["strength"])
            excluded = baseline.pushes(kit, emotion)
            for s, (heads, neurons) in enumerate(settings.sizes):
                parts = candidate_parts(ranking, emotion, heads, neurons, excluded)
                made = comparison_rows(bundle, kit, baseline, users, emotion, parts, settings.mode, means, seed=settings.seed)
                for row in made:
                    variant = dict(row.tags)["variant"]
                    if variant == "baseline" and s > 0:
                        continue  # one baseline reply per prompt serves every size
                    rows.append(row)
                    keys.append((emotion, method, factor, baseline.strength, heads, neurons, " ".join(c.token for c in parts)))
    replies = generate_rows(bundle, rows, generation, progress=progress, desc="prepared knockouts")
    scores = score_replies(judge, rows, replies)
    scores[["emotion", "method", "factor", "strength", "heads", "neurons", "parts_chosen"]] = pd.DataFrame(keys, index=scores.index)
    table = []
    for (emotion, method, factor), group in scores.groupby(["emotion", "method", "factor"], sort=False):
        base = group[group["variant"] == "baseline"]
        for (heads, neurons, parts), sized in group[group["variant"] != "baseline"].groupby(
            ["heads", "neurons", "parts_chosen"], sort=False
        ):
            counted = tally(pd.concat([base, sized]))
            table.append(_candidate(emotion, method, factor, float(base["strength"].iloc[0]), heads, neurons, parts, counted, settings))
    return pd.DataFrame(table)


def choose(table: pd.DataFrame, settings: PrepareSettings = PrepareSettings()) -> pd.DataFrame:
    """The candidates with ``eligible`` (the checks of this module's rule) and ``chosen`` (each emotion's pick) added."""
    frame = table.copy()
    allowed = (settings.max_degenerate * frame["prompts"]).clip(lower=1)
    frame["eligible"] = (
        (frame["carried"] >= settings.min_carried * frame["prompts"])
        & (frame["degenerate"] * frame["prompts"] <= allowed + 1e-9)
        & (frame["baseline_degenerate"] * frame["prompts"] <= allowed + 1e-9)
    )
    frame["chosen"] = False
    for _, group in frame.groupby("emotion", sort=False):
        pool = group[group["eligible"]] if group["eligible"].any() else group
        best = pool.assign(size=pool["heads"] + pool["neurons"]).sort_values(["score", "size", "factor"], ascending=[False, True, True])
        frame.loc[best.index[0], "chosen"] = True
    return frame


def _candidate(
    emotion: str,
    method: str,
    factor: float,
    strength: float,
    heads: int,
    neurons: int,
    parts: str,
    counted: Tally,
    settings: PrepareSettings,
) -> dict:
    degenerate = counted.degenerate / counted.scenarios
    return {
        "emotion": emotion,
        "method": method,
        "factor": float(factor),
        "strength": strength,
        "heads": int(heads),
        "neurons": int(neurons),
        "mode": settings.mode,
        "parts": parts,
        "prompts": counted.scenarios,
        "carried": counted.carried,
        "removed": counted.removed_share,
        "random_removed": counted.random_share,
        "degenerate": degenerate,
        "random_degenerate": counted.random_degenerate / counted.scenarios,
        "baseline_degenerate": counted.baseline_degenerate / counted.scenarios,
        "score": counted.removed_share - counted.random_share,
    }


def chosen(table: pd.DataFrame) -> dict[str, PreparedKnockout]:
    """Each emotion's prepared knockout from the cache table ``prepared`` (``choose``)."""
    picked = choose(table)
    return {str(row["emotion"]): PreparedKnockout.from_row(row) for _, row in picked[picked["chosen"]].iterrows()}


def measure_prepared(
    bundle: ModelBundle,
    kit: SteeringKit,
    judge: EmotionJudge,
    prepared: dict[str, PreparedKnockout],
    means: NeutralMeans,
    prompts: Sequence[PromptSpec],
    settings: GenerationSettings,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, dict]:
    """The prepared knockouts on ``prompts`` (the evaluation split), per emotion: the counts of ``knockout.Tally``, the
    shares, the one-sided Fisher p-value against the random sets, whether it meets the targets (``TARGET_*``), and two
    example triples of replies."""
    from emo_core.knockout import comparison_rows, tally
    from emo_core.scoring import generate_rows, score_replies

    users = [p.user for p in prompts]
    rows = []
    for emotion, chosen_one in prepared.items():
        rows += comparison_rows(bundle, kit, chosen_one.baseline, users, emotion, chosen_one.parts, chosen_one.mode, means, seed=seed)
    replies = generate_rows(bundle, rows, settings, progress=progress, desc="prepared knockouts")
    scores = score_replies(judge, rows, replies)
    out = {}
    for emotion, group in scores.groupby("emotion", sort=False):
        counted = tally(group)
        chosen_one = prepared[emotion]
        examples = group[group["scenario"].isin(["0", "1"])].pivot(index="scenario", columns="variant", values="reply")
        out[emotion] = {
            "baseline": {"method": chosen_one.baseline.method, "strength": chosen_one.baseline.strength, "factor": chosen_one.factor},
            "parts": chosen_one.size,
            "mode": chosen_one.mode,
            "scenarios": counted.scenarios,
            "carried": counted.carried,
            "removed": counted.removed,
            "random_removed": counted.random_removed,
            "removed_share": counted.removed_share,
            "random_share": counted.random_share,
            "degenerate_share": counted.degenerate / counted.scenarios,
            "random_degenerate_share": counted.random_degenerate / counted.scenarios,
            "baseline_degenerate_share": counted.baseline_degenerate / counted.scenarios,
            "p_value": counted.p_value,
            "meets_target": bool(
                counted.carried
                and counted.removed_share >= TARGET_REMOVED
                and counted.random_share <= TARGET_RANDOM
                and counted.degenerate / counted.scenarios <= TARGET_DEGENERATE
            ),
            "examples": examples.reset_index(drop=True).to_dict("records"),
        }
    return out
