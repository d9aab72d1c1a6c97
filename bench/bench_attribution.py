"""How well attribution patching predicts real knockouts on the built-in model: Spearman rank correlation.

For one baseline and a few emotions, the estimated drop of the emotion's reading (``attribution.py``)
of every head and neuron is computed on a few training prompts; then the 64 parts with the largest
estimated drop and 64 random ones are really switched off, one at a time, on the same replies, and
the estimate is compared with the truth. With ``--harm``, the same for the language-model loss on
neutral prompts.

    python -m bench.bench_attribution --baseline steered --emotions anger sadness --prompts 4 [--harm]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from scipy.stats import spearmanr

from bench.bench_generation import cpu_name
from emo_core import load_model
from emo_core.attribution import lm_loss, loss_attribution, own_effects, training_openings
from emo_core.baselines import CAUSAL_KINDS, Baseline, baseline_rows
from emo_core.forced import ForcedReply, forced_pass, forced_rows
from emo_core.parts import KINDS, Component, Kind, knockout, top_parts
from emo_core.results import load_results
from emo_core.scenarios import EMOTIONS, load_skeletons, neutral_prompts, spread
from emo_core.scoring import SCORING_SETTINGS, generate_rows


def _pick(estimate: torch.Tensor, kind: Kind, n_top: int, rng: random.Random) -> list[Component]:
    """The ``n_top`` best parts of an estimate grid, then as many others drawn at random."""
    top = [part for part, _ in top_parts(estimate, kind, n_top)]
    chosen = set(top)
    rest = [Component(kind, layer, i) for layer in range(estimate.shape[0]) for i in range(estimate.shape[1])]
    return top + rng.sample([part for part in rest if part not in chosen], n_top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="steered", choices=CAUSAL_KINDS)
    parser.add_argument("--emotions", nargs="+", default=["anger"], choices=EMOTIONS)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--top", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["zero", "mean"])
    parser.add_argument("--harm", action="store_true")
    parser.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    started = time.time()
    bundle = load_model("default")
    results = load_results(bundle.name)
    reading, kit = results.reading(), results.steering_kit(bundle)
    means = results.neutral_means
    prompts = spread(neutral_prompts(load_skeletons("train")), args.prompts)
    rows = baseline_rows(Baseline(args.baseline), kit, prompts, args.emotions, training_openings())
    replies = generate_rows(bundle, rows, SCORING_SETTINGS)
    estimates = own_effects(bundle, reading, rows, replies, means, batch_size=12)  # [E, L, units], ablated - baseline
    base_rows = forced_rows(rows, replies)
    rng = random.Random(0)
    report: dict = {"baseline": args.baseline, "prompts": args.prompts, "reading": {}, "harm": {}}
    for emotion in args.emotions:
        e = EMOTIONS.index(emotion)
        mine = [i for i, row in enumerate(rows) if row.emotion == emotion]
        with torch.inference_mode():
            base_states, _, _ = forced_pass(bundle, [base_rows[i] for i in mine], reading.layers)
        base = reading(base_states.float())[:, e]
        for kind in KINDS:
            for mode in args.modes:
                drop_estimate = -estimates[kind][mode][e]
                units = _pick(drop_estimate, kind, args.top, rng)
                knocked = [
                    ForcedReply(base_rows[i].prompt, base_rows[i].tokens, (*base_rows[i].edits, *knockout([unit], mode, means)))
                    for unit in units
                    for i in mine
                ]
                values = torch.cat(
                    [reading(forced_pass(bundle, knocked[s : s + 32], reading.layers)[0].float())[:, e] for s in range(0, len(knocked), 32)]
                )
                truth = (base.repeat(len(units)) - values).view(len(units), len(mine)).mean(dim=1).tolist()
                guess = [float(drop_estimate[unit.layer, unit.index]) for unit in units]
                entry = {
                    "spearman_all": float(spearmanr(guess, truth).statistic),
                    "spearman_top": float(spearmanr(guess[: args.top], truth[: args.top]).statistic),
                    "top_true_drop_mean": sum(truth[: args.top]) / args.top,
                    "random_true_drop_mean": sum(truth[args.top :]) / args.top,
                    "best": [[units[i].token, guess[i], truth[i]] for i in range(5)],
                }
                report["reading"][f"{emotion}/{kind}/{mode}"] = entry
                print(emotion, kind, mode, json.dumps({k: v for k, v in entry.items() if k != "best"}), flush=True)
    if args.harm:
        texts = [Baseline("plain").prompt(bundle, p.user) for p in spread(neutral_prompts(load_skeletons("train")), 8)]
        total, count, harm = loss_attribution(bundle, texts, means)
        for kind in KINDS:
            for mode in args.modes:
                estimate = harm[kind][mode] / count
                units = _pick(estimate.abs(), kind, args.top, rng)
                truth = [lm_loss(bundle, texts, knockout([unit], mode, means))[0] / count - total / count for unit in units]
                guess = [float(estimate[unit.layer, unit.index]) for unit in units]
                entry = {"spearman_all": float(spearmanr(guess, truth).statistic), "base_loss": total / count}
                entry["worst"] = [[units[i].token, guess[i], truth[i]] for i in range(5)]
                report["harm"][f"{kind}/{mode}"] = entry
                print("harm", kind, mode, json.dumps(entry), flush=True)
    report["seconds"] = round(time.time() - started, 1)
    print(f"{report['seconds']} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
