"""``evaluate``: how well the pipeline's findings hold up on scenarios it never saw, as ``report.json``.

Everything here runs on the evaluation skeletons, which nothing is fitted or tuned on:

- the judge's accuracy on its held-out sentences;
- steering accuracy: prompted vs direction vs circuit steering (and the unsteered reply as chance),
  per emotion and per valence, with the share of degenerate replies;
- ablation: switching off the top-k neurons / heads of the emotion's circuit against as many random
  components from the same layers, as the drop of the target emotion's probability with bootstrap
  95% intervals, on a steered and on a prompted emotional baseline;
- cluster structure: each emotion's nearest other emotion and the separation score per layer.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emo_core.activations import StageProgress
from emo_core.circuit import Circuit
from emo_core.generation import chat_prompt
from emo_core.interventions import HeadAblation, Intervention, NeuronAblation
from emo_core.judge import HELDOUT_PATH, LABELS, EmotionJudge, judge_accuracy, load_judge, read_labelled
from emo_core.models import ModelBundle, load_model
from emo_core.results import CACHE_ROOT, REPORT, Results, load_results
from emo_core.scenarios import EMOTION_SYSTEM, EMOTIONS, VALENCES, PromptSpec, emotion_prompts, load_skeletons, neutral_prompts, spread
from emo_core.scoring import Row, generate_rows, score_replies
from emo_core.steering import METHODS, SteeringKit, tuned_steering

NEURON_KS = (1, 2, 4, 8)
HEAD_KS = (1, 2, 4)


@dataclass(frozen=True)
class EvalSettings:
    """How much of the evaluation split to use; the defaults fit in 15 minutes on 2 CPU cores."""

    skeletons: int = 32
    ablation_prompts: int = 8  # per emotion
    prompted_ablation_prompts: int = 4  # per emotion; prompted replies are rarely emotional, so this baseline says less
    bootstrap: int = 2000
    seed: int = 0


def bootstrap_interval(values: Sequence[float], n: int, seed: int) -> list[float]:
    """95% percentile-bootstrap interval of the mean."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n, len(data)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarise(scores: pd.DataFrame) -> dict:
    """Accuracy overall, per emotion and per valence, and the degenerate share, as plain floats."""
    return {
        "overall": float(scores["hit"].mean()),
        "per_emotion": {e: float(scores.loc[scores["emotion"] == e, "hit"].mean()) for e in EMOTIONS},
        "per_valence": {v: float(scores.loc[scores["valence"] == v, "hit"].mean()) for v in VALENCES},
        "degenerate_rate": float(scores["degenerate"].mean()),
        "n": len(scores),
        "examples": {e: scores.loc[scores["emotion"] == e, ["valence", "predicted", "reply"]].head(2).to_dict("records") for e in EMOTIONS},
    }


def steering_rows(bundle: ModelBundle, results: Results, kit: SteeringKit, method: str, skeletons: Sequence) -> list[Row]:
    """One row per (skeleton, valence, emotion) for ``method`` (``none``, ``prompt`` or a steering method)."""
    if method == "prompt":
        return [Row(chat_prompt(bundle, p.user, p.system), p.emotion, (), (("valence", p.valence),)) for p in emotion_prompts(skeletons)]
    rows = []
    for p in neutral_prompts(skeletons):
        text = chat_prompt(bundle, p.user, p.system)
        for emotion in EMOTIONS:
            edits = () if method == "none" else tuple(tuned_steering(kit, results.steering_settings(method, emotion), method, emotion))
            rows.append(Row(text, emotion, edits, (("valence", p.valence),)))
    return rows


def ablation_sets(circuit: Circuit, kind: str, k: int, shape: dict[str, int], rng: random.Random) -> tuple[Intervention, Intervention]:
    """Zero-ablation of the circuit's top-k heads or neurons, and of k random ones from the same layers."""
    members = circuit.heads if kind == "heads" else circuit.neurons
    top = [(layer, index) for layer, index, _ in members[:k]]
    width = shape["n_heads"] if kind == "heads" else shape["d_mlp"]
    layers = sorted({layer for layer, _, _ in members})
    chosen = set(top)
    pool = [(layer, i) for layer in layers for i in range(width) if (layer, i) not in chosen]
    control = rng.sample(pool, len(top))
    make = HeadAblation if kind == "heads" else NeuronAblation
    return make(tuple(top)), make(tuple(control))


def ablation_report(
    bundle: ModelBundle,
    judge: EmotionJudge,
    results: Results,
    baseline: Callable[[str, PromptSpec], tuple[str, tuple[Intervention, ...]]],
    prompts: Sequence[PromptSpec],
    settings: EvalSettings,
    progress: Callable[[int, int], None] | None,
) -> dict:
    """Target-probability drops of top-k vs random ablations on top of an emotional ``baseline``.

    ``baseline(emotion, prompt)`` gives the templated prompt and edits that make the reply to an
    emotion-free ``prompt`` emotional.
    """
    rng = random.Random(settings.seed)
    conditions: list[tuple[str, int, str]] = [("base", 0, "")]
    conditions += [
        (kind, k, which) for kind, ks in (("neurons", NEURON_KS), ("heads", HEAD_KS)) for k in ks for which in ("target", "random")
    ]
    rows, keys = [], []
    for emotion in EMOTIONS:
        circuit = results.circuit(emotion)
        for prompt in prompts:
            text, edits = baseline(emotion, prompt)
            for kind, k, which in conditions:
                extra: tuple[Intervention, ...] = ()
                if kind != "base":
                    top, control = ablation_sets(circuit, kind, k, results.shape, rng)
                    extra = (top if which == "target" else control,)
                rows.append(Row(text, emotion, edits + extra))
                keys.append((emotion, prompt.key, kind, k, which))
    scores = score_replies(judge, rows, generate_rows(bundle, rows, progress=progress, desc="ablation"))
    table = pd.DataFrame(keys, columns=["emotion", "prompt", "kind", "k", "which"]).assign(p=scores["p_target"].to_numpy())
    base = table[table["kind"] == "base"].set_index(["emotion", "prompt"])["p"]
    report: dict = {"baseline_p_target": float(base.mean())}
    for kind, ks in (("neurons", NEURON_KS), ("heads", HEAD_KS)):
        report[kind] = {}
        for k in ks:
            entry = {}
            for which in ("target", "random"):
                chosen = table[(table["kind"] == kind) & (table["k"] == k) & (table["which"] == which)].set_index(["emotion", "prompt"])[
                    "p"
                ]
                drops = (base - chosen).to_numpy()
                entry[f"{which}_drop"] = float(drops.mean())
                entry[f"{which}_ci95"] = bootstrap_interval(drops, settings.bootstrap, settings.seed)
            entry["ratio"] = entry["target_drop"] / entry["random_drop"] if entry["random_drop"] > 0 else None
            report[kind][str(k)] = entry
    return report


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
    emotion_judge = load_judge(judge)
    kit = results.steering_kit(bundle)
    skeletons = load_skeletons("eval")[: settings.skeletons]

    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    texts, labels = read_labelled(HELDOUT_PATH)
    accuracy, confusion = judge_accuracy(emotion_judge, texts, labels)
    report: dict = {
        "model": bundle.name,
        "settings": asdict(settings),
        "judge": {"kind": judge, "heldout_accuracy": accuracy, "labels": list(LABELS), "confusion": confusion.tolist()},
        "steering": {},
    }
    for method in ("none", "prompt", *METHODS):
        rows = steering_rows(bundle, results, kit, method, skeletons)
        scores = score_replies(emotion_judge, rows, generate_rows(bundle, rows, progress=stage(f"steering: {method}"), desc=method))
        report["steering"][method] = summarise(scores)

    picked = spread(neutral_prompts(skeletons), settings.ablation_prompts)

    def steered(emotion: str, prompt: PromptSpec) -> tuple[str, tuple[Intervention, ...]]:
        edits = tuned_steering(kit, results.steering_settings("direction", emotion), "direction", emotion)
        return chat_prompt(bundle, prompt.user, prompt.system), tuple(edits)

    def prompted(emotion: str, prompt: PromptSpec) -> tuple[str, tuple[Intervention, ...]]:
        return chat_prompt(bundle, prompt.user, EMOTION_SYSTEM.format(emotion=emotion)), ()

    report["ablation"] = {
        "baseline": "direction steering (tuned strength) on emotion-free evaluation prompts",
        **ablation_report(bundle, emotion_judge, results, steered, picked, settings, stage("ablation: steered")),
        "prompted": {
            "baseline": "the emotion-eliciting prompt, no steering",
            **ablation_report(
                bundle,
                emotion_judge,
                results,
                prompted,
                picked[: settings.prompted_ablation_prompts],
                settings,
                stage("ablation: prompted"),
            ),
        },
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
