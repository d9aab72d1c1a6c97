"""Work done once instead of per row, on the built-in model: each shortcut against the plain way, in one run.

- knockout curves: every knockout replayed on its recorded teacher-forced baseline row from the lowest
  layer it touches (``knockout_curves._readings``) against a full teacher-forced pass per knockout
  (``attribution.forced_pass``), on one emotion's curve rows of the *steered* baseline;
- steered generation: a prompt's prefill run once for the rows that steer it different ways
  (``generation._shared_prefill``) against every row running its whole prompt;
- expression vectors: the question run once per batch (``expression.reply_means``) against batches of
  whole left-padded question-and-reply texts (as before).

Each prints both times, their ratio and how far the results differ.

    python -m bench.bench_shared_work
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from unittest import mock

import torch

from bench.bench_generation import cpu_name
from emo_core import generation, load_model
from emo_core.baselines import Baseline, baseline_rows
from emo_core.expression import QUESTION, reply_means
from emo_core.forced import ForcedReply, forced_pass, forced_rows
from emo_core.interventions import capture
from emo_core.judge import TRAIN_PATH, read_labelled
from emo_core.knockout_curves import CurveSettings, _Plan, _readings, ranked_parts
from emo_core.parts import KINDS, knockout, matched_random
from emo_core.results import load_results
from emo_core.scenarios import EMOTIONS, load_skeletons, neutral_prompts, spread
from emo_core.scoring import SCORING_SETTINGS, generate_rows


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def report(name: str, shared: float, plain: float, agreement: str) -> None:
    print(f"{name:<22} shared {shared:6.1f} s   plain {plain:6.1f} s   ratio {shared / plain:.2f}   {agreement}", flush=True)


def main() -> None:
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads")
    bundle = load_model("default")
    results = load_results(bundle.name)
    reading, kit, means = results.reading(), results.steering_kit(bundle), results.neutral_means
    skeletons = load_skeletons("eval")[:16]

    settings, rng, plan = CurveSettings(), random.Random(0), _Plan()
    rows = baseline_rows(Baseline("steered"), kit, spread(neutral_prompts(skeletons), 2))
    base_rows = forced_rows(rows, generate_rows(bundle, rows, SCORING_SETTINGS))
    emotion = EMOTIONS.index("sadness")
    for ranking in settings.rankings:
        for kind in KINDS:
            for k in settings.ks:
                top = ranked_parts(results, ranking, "steered", kind, EMOTIONS[emotion], settings.mode, k)
                for p in range(2):
                    plan.add(2 * emotion + p, knockout(top, settings.mode, means), ())
                for d in range(settings.draws):
                    plan.add(2 * emotion + d % 2, knockout(matched_random(top, results.shape, rng), settings.mode, means), ())
    (_, replayed), shared = timed(lambda: _readings(bundle, reading, base_rows, plan, settings.batch_size, None))
    whole = [
        ForcedReply(base_rows[b].prompt, base_rows[b].tokens, (*base_rows[b].edits, *change))
        for b, change in zip(plan.bases, plan.changes, strict=True)
    ]
    full, plain = timed(
        lambda: torch.cat([reading(forced_pass(bundle, whole[i : i + 32], reading.layers)[0]) for i in range(0, len(whole), 32)])
    )
    report(f"curves ({len(whole)} rows)", shared, plain, f"max reading difference {float((replayed - full).abs().max()):.1e}")

    steered = baseline_rows(Baseline("steered", "circuit"), kit, neutral_prompts(skeletons)[:8])  # 8 prompts, 6 emotions each
    once, shared = timed(lambda: generate_rows(bundle, steered, SCORING_SETTINGS))
    with mock.patch.object(generation, "_shared_prefill", return_value=None):
        each, plain = timed(lambda: generate_rows(bundle, steered, SCORING_SETTINGS))
    differing = sum(a.token_ids != b.token_ids for a, b in zip(once, each, strict=True))
    report(f"steered ({len(steered)} replies)", shared, plain, f"{differing} replies differ")

    texts, _ = read_labelled(TRAIN_PATH)
    sentences = texts[:128]
    means, shared = timed(lambda: reply_means(bundle, sentences, ("resid_post",)))
    prompt = generation.chat_prompt(bundle, QUESTION)
    n = len(bundle.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def whole_passes() -> torch.Tensor:
        out = []
        for start in range(0, len(sentences), 32):
            batch = generation.encode(bundle, [prompt + sentence for sentence in sentences[start : start + 32]])
            mask = batch["attention_mask"].clone()
            for row, length in enumerate(mask.sum(dim=1).tolist()):
                mask[row, : mask.shape[1] - length + n] = 0  # left padding, then the question
            weights = (mask / mask.sum(dim=1, keepdim=True)).float()[..., None]
            with torch.inference_mode(), capture(bundle, ["resid_post"]) as seen:
                bundle.model(**batch, logits_to_keep=1)
            layers = range(bundle.shape.n_layers)
            out.append(torch.stack([(seen[("resid_post", layer)].float() * weights).sum(dim=1) for layer in layers], dim=1))
        return torch.cat(out)

    reference, plain = timed(whole_passes)
    difference = float((means["resid_post"] - reference).abs().max())
    report(f"expression ({len(sentences)} texts)", shared, plain, f"max difference {difference:.1e}")


if __name__ == "__main__":
    main()
