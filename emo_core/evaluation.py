"""``evaluate``: how well the pipeline's findings hold up on scenarios it never saw, as ``report.json``.

Everything here runs on the evaluation skeletons, which nothing is fitted or tuned on:

- the judge's accuracy on its held-out sentences;
- both judges' accuracy on their own held-out sentences and on each other's, and the fluency check's precision and
  recall on replies a reader labelled;
- steering accuracy: asked vs direction vs circuit steering (and the plain reply as chance), per emotion
  and per valence, a reply counting only when both judges read the emotion and it is fluent and answers its scenario,
  with each judge's own figure, their agreement, the share of degenerate replies and why, and two random replies per
  emotion;
- ablation: knockout curves (``knockout_curves.py``): the top-k heads / neurons of the causal ranking
  and of the paper's ranking switched off against k random ones from the same layers, on a steered,
  an asked and a continued emotional baseline, read by the internal reading and (for a few k) by the
  judge, with bootstrap 95% intervals, the target sets' specificity and their harm;
- the prepared knockouts (``prepared.py``): each emotion's chosen baseline and knockout on every evaluation prompt,
  against a matched random set per prompt, in the words (longer replies, classroom-safe decoding, as the page writes);
- cluster structure: each emotion's nearest other emotion and the separation score per layer.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from emo_core import fluency
from emo_core.baselines import Baseline, baseline_rows
from emo_core.generation import GenerationSettings
from emo_core.judge import HELDOUT_PATH, LABELS, NGRAM_HELDOUT_PATH, SECOND_JUDGE, judge_accuracy, load_judge, read_labelled
from emo_core.knockout_curves import CurveSettings, knockout_curves
from emo_core.models import ModelBundle, load_model
from emo_core.prepared import chosen, measure_prepared
from emo_core.progress import StageProgress, stage
from emo_core.results import CACHE_ROOT, REPORT, load_results
from emo_core.scenarios import EMOTIONS, VALENCES, load_skeletons, neutral_prompts
from emo_core.scoring import SCORING_SETTINGS, generate_rows, score_replies

# How the steering evaluation makes replies emotional; the report's ``steering`` section is keyed by ``Baseline.key``.
STEERING_BASELINES = (Baseline("plain"), Baseline("asked"), Baseline("steered", "direction"), Baseline("steered", "circuit"))


@dataclass(frozen=True)
class EvalSettings:
    """How much of the evaluation split to use."""

    skeletons: int = 16  # 48 replies per emotion and method
    bootstrap: int = 2000
    seed: int = 0
    curves: CurveSettings = CurveSettings()
    prepared_tokens: int = 48  # the Knockout page's grid writes replies this long


EXAMPLES = 2  # replies per emotion a report keeps, drawn at random (seeded), so they are typical rather than picked


def _on_target(scores: pd.DataFrame, column: str) -> dict:
    return {
        "overall": float(scores[column].mean()),
        "per_emotion": {e: float(scores.loc[scores["emotion"] == e, column].mean()) for e in EMOTIONS},
    }


def summarise(scores: pd.DataFrame, seed: int = 0) -> dict:
    """Accuracy overall, per emotion and per valence, the degenerate share and its reasons, as plain floats; with a second
    judge's columns (``score_replies``), each judge's figures and how often their labels agree. ``examples`` holds
    ``EXAMPLES`` replies per emotion drawn at random with ``seed``."""
    fields = [c for c in ("scenario", "valence", "predicted", "predicted_2", "hit", "reason", "reply") if c in scores]
    summary = {
        **_on_target(scores, "hit"),
        "per_valence": {v: float(scores.loc[scores["valence"] == v, "hit"].mean()) for v in VALENCES},
        "degenerate_rate": float(scores["degenerate"].mean()),
        "reasons": {str(k): int(v) for k, v in scores.loc[scores["degenerate"], "reason"].value_counts().items()},
        "n": len(scores),
        "examples": {
            e: scores.loc[scores["emotion"] == e, fields]
            .sample(n=min(EXAMPLES, int((scores["emotion"] == e).sum())), random_state=seed)
            .astype(object)
            .to_dict("records")
            for e in EMOTIONS
        },
    }
    if "hit_2" in scores:
        summary["by_judge"] = {"first": _on_target(scores, "hit_1"), "second": _on_target(scores, "hit_2")}
        summary["agreement"] = float(scores["agree"].mean())
    return summary


def evaluate(
    source: str = "default",
    *,
    root: Path = CACHE_ROOT,
    device: str = "cpu",
    dtype: str = "float32",
    judge: str = "minilm",
    settings: EvalSettings = EvalSettings(),
    progress: StageProgress | None = None,
    bundle: ModelBundle | None = None,
) -> dict:
    """Evaluate the cached results of ``source`` and write ``report.json`` next to the cache."""
    started = time.time()
    bundle = bundle or load_model(source, dtype=dtype, device=device)
    results = load_results(bundle.name, root)
    emotion_judge, second_judge = load_judge(judge), load_judge(SECOND_JUDGE)
    kit = results.steering_kit(bundle)
    skeletons = load_skeletons("eval")[: settings.skeletons]

    heldout = {"first": read_labelled(HELDOUT_PATH), "second": read_labelled(NGRAM_HELDOUT_PATH)}
    accuracy, confusion = judge_accuracy(emotion_judge, *heldout["first"])
    second_accuracy, second_confusion = judge_accuracy(second_judge, *heldout["second"])
    report: dict = {
        "model": bundle.name,
        "settings": asdict(settings),
        "judge": {"kind": judge, "heldout_accuracy": accuracy, "labels": list(LABELS), "confusion": confusion.tolist()},
        "second_judge": {
            "kind": SECOND_JUDGE,
            "heldout_accuracy": second_accuracy,
            "confusion": second_confusion.tolist(),
            "cv_accuracy": getattr(second_judge, "cv_accuracy", None),
            # each judge on the other's held-out sentences: how far either generalises beyond its own writer
            "first_on_second_heldout": judge_accuracy(emotion_judge, *heldout["second"])[0],
            "second_on_first_heldout": judge_accuracy(second_judge, *heldout["first"])[0],
        },
        "fluency_check": fluency.measure(),
        "steering": {},
    }
    known = {}
    prompts = neutral_prompts(skeletons)
    for baseline in STEERING_BASELINES:
        rows = baseline_rows(baseline, kit, prompts)
        replies = generate_rows(bundle, rows, progress=stage(progress, f"steering: {baseline.key}"), desc=baseline.key)
        report["steering"][baseline.key] = summarise(score_replies(emotion_judge, rows, replies, second_judge), settings.seed)
        if baseline == Baseline(baseline.kind) and baseline.kind in settings.curves.baselines:  # the curves' steered and asked rows
            known[baseline.kind] = {(row.prompt, row.emotion): reply for row, reply in zip(rows, replies, strict=True)}

    prepared = chosen(results.table("prepared"))
    written = GenerationSettings(**{**vars(SCORING_SETTINGS), "max_new_tokens": settings.prepared_tokens, "classroom_safe": True})
    report["prepared"] = measure_prepared(
        bundle, kit, emotion_judge, prepared, results.neutral_means, prompts, written, settings.seed, stage(progress, "prepared knockouts")
    )

    curves = replace(settings.curves, bootstrap=settings.bootstrap, seed=settings.seed)
    report["ablation"] = {
        "curves": knockout_curves(bundle, results, emotion_judge, prompts, curves, progress, known),
    }
    nearest = results.table("nearest")
    separation = results.separation_by_layer()
    report["clusters"] = {
        "nearest": {str(layer): dict(zip(group["emotion"], group["nearest"], strict=True)) for layer, group in nearest.groupby("layer")},
        "separation": {
            str(int(row.layer)): {"silhouette": float(row.silhouette), "probe_accuracy": float(row.probe_accuracy)}
            for row in separation.itertuples()
        },
    }
    report["seconds"] = round(time.time() - started, 1)
    (results.folder / REPORT).write_text(json.dumps(report, indent=2))
    return report
