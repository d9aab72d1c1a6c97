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
from emo_core.attribution import (
    BASELINES,
    ForcedReply,
    baseline_rows,
    forced_pass,
    forced_rows,
    lm_loss,
    loss_attribution,
    own_effects,
    training_openings,
)
from emo_core.generation import chat_prompt
from emo_core.knockout_curves import knockout
from emo_core.reading import EmotionReading
from emo_core.results import load_results
from emo_core.scenarios import EMOTIONS, NEUTRAL_SYSTEM, load_skeletons, neutral_prompts, spread
from emo_core.scoring import SCORING_SETTINGS, generate_rows


def _pick(estimate: torch.Tensor, n_top: int, rng: random.Random) -> list[tuple[int, int]]:
    width = estimate.shape[1]
    top = [(int(i) // width, int(i) % width) for i in estimate.flatten().topk(n_top).indices]
    rest = [(layer, i) for layer in range(estimate.shape[0]) for i in range(width) if (layer, i) not in set(top)]
    return top + rng.sample(rest, n_top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="steered", choices=BASELINES)
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
    reading, kit = EmotionReading.from_tensors(results.cache.tensors), results.steering_kit(bundle)
    means = {"heads": results.tensor("means.attn_z"), "neurons": results.tensor("means.mlp_post")}
    prompts = spread(neutral_prompts(load_skeletons("train")), args.prompts)
    rows = [
        row
        for row in baseline_rows(kit, results.table("steering"), prompts, args.baseline, training_openings())
        if row.emotion in args.emotions
    ]
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
        for kind in ("heads", "neurons"):
            for mode in args.modes:
                drop_estimate = -estimates[kind][mode][e]
                units = _pick(drop_estimate, args.top, rng)
                knocked = [
                    ForcedReply(base_rows[i].prompt, base_rows[i].tokens, (*base_rows[i].edits, knockout(results, kind, [unit], mode)))
                    for unit in units
                    for i in mine
                ]
                values = torch.cat(
                    [reading(forced_pass(bundle, knocked[s : s + 32], reading.layers)[0].float())[:, e] for s in range(0, len(knocked), 32)]
                )
                truth = (base.repeat(len(units)) - values).view(len(units), len(mine)).mean(dim=1).tolist()
                guess = [float(drop_estimate[layer, index]) for layer, index in units]
                entry = {
                    "spearman_all": float(spearmanr(guess, truth).statistic),
                    "spearman_top": float(spearmanr(guess[: args.top], truth[: args.top]).statistic),
                    "top_true_drop_mean": sum(truth[: args.top]) / args.top,
                    "random_true_drop_mean": sum(truth[args.top :]) / args.top,
                    "best": [[*units[i], guess[i], truth[i]] for i in range(5)],
                }
                report["reading"][f"{emotion}/{kind}/{mode}"] = entry
                print(emotion, kind, mode, json.dumps({k: v for k, v in entry.items() if k != "best"}), flush=True)
    if args.harm:
        texts = [chat_prompt(bundle, p.user, NEUTRAL_SYSTEM) for p in spread(neutral_prompts(load_skeletons("train")), 8)]
        total, count, harm = loss_attribution(bundle, texts, means)
        for kind in ("heads", "neurons"):
            for mode in args.modes:
                estimate = harm[kind][mode] / count
                units = _pick(estimate.abs(), args.top, rng)
                truth = [lm_loss(bundle, texts, [knockout(results, kind, [unit], mode)])[0] / count - total / count for unit in units]
                guess = [float(estimate[unit]) for unit in units]
                entry = {"spearman_all": float(spearmanr(guess, truth).statistic), "base_loss": total / count}
                entry["worst"] = [[*units[i], guess[i], truth[i]] for i in range(5)]
                report["harm"][f"{kind}/{mode}"] = entry
                print("harm", kind, mode, json.dumps(entry), flush=True)
    report["seconds"] = round(time.time() - started, 1)
    print(f"{report['seconds']} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
