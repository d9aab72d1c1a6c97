"""Rows per generated batch, on the built-in model: ``generate_rows`` at 48 rows per batch against ``ROWS_PER_BATCH``.

Three kinds of evaluation rows, 144 of each: direction-steered (a shared prompt's prefill runs once), knockouts of a
ranking's top 16 neurons and of matched random ones on direction-steered prompts (the judged knockouts: every row runs
its whole prompt), and asked (the emotion request in the system prompt). Prints the CPU, both times, their ratio and
how many replies differ.

    python -m bench.bench_batches
"""

from __future__ import annotations

import random

import torch

from bench.bench_generation import cpu_name
from bench.bench_shared_work import timed
from emo_core import load_model
from emo_core.baselines import Baseline, baseline_rows
from emo_core.knockout_curves import ranked_parts
from emo_core.parts import knockout, matched_random
from emo_core.results import load_results
from emo_core.scenarios import load_skeletons, neutral_prompts
from emo_core.scoring import ROWS_PER_BATCH, SCORING_SETTINGS, Row, generate_rows

ROWS = 144
SMALL = 48


def main() -> None:
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads")
    bundle = load_model("default")
    results = load_results(bundle.name)
    kit = results.steering_kit(bundle)
    skeletons = load_skeletons("eval")[:16]
    prompts = neutral_prompts(skeletons)
    steered = baseline_rows(Baseline("steered"), kit, prompts)
    rng = random.Random(0)
    knocked = []
    for row in steered[: ROWS // 2]:
        top = ranked_parts(results, "causal", "steered", "neuron", row.emotion, "mean", 16)
        for parts in (top, matched_random(top, results.shape, rng)):
            knocked.append(Row(row.prompt, row.emotion, (*row.interventions, *knockout(parts, "mean", results.neutral_means))))
    first = prompts[: ROWS // 6]  # every emotion of the first prompts
    workloads = {
        "direction-steered": baseline_rows(Baseline("steered", "direction"), kit, first),
        "knockouts": knocked,
        "asked": baseline_rows(Baseline("asked"), kit, first),
    }
    generate_rows(bundle, knocked[:2], SCORING_SETTINGS)  # first touch of the weights and the decode layout choice
    for name, rows in workloads.items():
        big, big_s = timed(lambda rows=rows: generate_rows(bundle, rows, SCORING_SETTINGS, batch_size=ROWS_PER_BATCH))
        small, small_s = timed(lambda rows=rows: generate_rows(bundle, rows, SCORING_SETTINGS, batch_size=SMALL))
        differing = sum(a.token_ids != b.token_ids for a, b in zip(big, small, strict=True))
        print(
            f"{name:<18} {len(rows)} replies: {ROWS_PER_BATCH} per batch {big_s:6.1f} s   {SMALL} per batch {small_s:6.1f} s"
            f"   ratio {big_s / small_s:.2f}   {differing} replies differ",
            flush=True,
        )


if __name__ == "__main__":
    main()
