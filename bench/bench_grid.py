"""Speed of the Knockout page's many-scenarios grid on the built-in model, measured in one run.

For each emotion's prepared knockout, the grid's batch (12 evaluation scenarios x baseline, knocked out, matched random:
36 replies of 48 tokens, classroom-safe decoding, as the page writes them) is streamed as the page streams it. Prints
the CPU, the seconds to the first redraw (every scenario's first words on screen), to the whole grid written, and to the
grid judged. Goals (issue 21): first row within 5 s, the whole grid judged within 20 s, on 2 cores with nothing else
running. Run: ``python -m bench.bench_grid``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

import emo_core as ec
from bench.bench_generation import cpu_name
from emo_core.generation import stream_replies
from emo_core.judge import load_judge
from emo_core.knockout import comparison_rows, tally
from emo_core.results import load_results
from emo_core.scenarios import EMOTIONS
from emo_core.scoring import SCORING_SETTINGS, batch_edits, score_replies
from ui.knockout_grid import scenarios

SETTINGS = replace(SCORING_SETTINGS, max_new_tokens=48, classroom_safe=True)


def main() -> None:
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads")
    bundle = ec.load_model("default")
    results = load_results(bundle.name)
    kit, means, judge = results.steering_kit(bundle), results.neutral_means, load_judge()
    users = [p.user for p in scenarios()]
    print(f"{'emotion':<10} {'first row s':>11} {'written s':>9} {'judged s':>8} {'tokens':>6}  removed / random")
    for emotion in EMOTIONS:
        prepared = results.prepared(emotion)
        rows = comparison_rows(bundle, kit, prepared.baseline, users, emotion, prepared.parts, prepared.mode, means)
        prompts, edits = [row.prompt for row in rows], batch_edits(rows)
        start = time.perf_counter()
        first = None
        for step in stream_replies(bundle, prompts, SETTINGS, edits):
            first, replies = first or time.perf_counter() - start, step
        written = time.perf_counter() - start
        counted = tally(score_replies(judge, rows, replies))
        judged = time.perf_counter() - start
        tokens = sum(len(reply.token_ids) for reply in replies)
        print(
            f"{emotion:<10} {first:>11.2f} {written:>9.2f} {judged:>8.2f} {tokens:>6}  "
            f"{counted.removed}/{counted.carried} vs {counted.random_removed}/{counted.carried}"
        )


if __name__ == "__main__":
    main()
