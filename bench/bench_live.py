"""Speed of the live pages' work on the built-in model, as ratios measured in one run.

Prints: the effect meter's answer to a toggle (the knockout and its control replayed as two rows from
their lowest layer on the recorded baseline), its answer to a new prompt or baseline (recording the
baseline first), next to the three-row full forward pass it replaced; the first token of a side-by-side
generation, 48 tokens of the Knockout page's generation (baseline, knocked out and the hidden control
row) and of a two-row side by side against one plain ``model.generate`` of 48 tokens, and the chance
check on the internal reading and with judged replies. Goals (issue 9): meter <= 200 ms, first token
<= 0.5 s, both replies <= 1.15x one plain generation, chance check <= 30 s (reading) and <= 3 min (judged).
"""

from __future__ import annotations

import random
import time

import torch

import emo_core as ec
from bench.bench_generation import cpu_name, interleaved
from emo_core.baselines import Baseline
from emo_core.generation import encode, stream_replies
from emo_core.interventions import on_rows
from emo_core.judge import load_judge
from emo_core.knockout import chance_check, effect_meter
from emo_core.parts import Component, circuit_components, knockout, matched_random
from emo_core.replay import record
from emo_core.results import load_results
from emo_core.scenarios import load_skeletons, neutral_prompts, spread

TOKENS = 48
SETTINGS = ec.GenerationSettings(max_new_tokens=TOKENS, min_new_tokens=TOKENS)
USER = "I covered the reception desk for a colleague who had called in sick\nI sent an important client to the wrong floor."


def first_token_seconds(bundle: ec.ModelBundle, prompts: list[str], edits: list) -> float:
    """Seconds from the call to the first streamed step."""
    start = time.perf_counter()
    next(iter(stream_replies(bundle, prompts, SETTINGS, edits, observe=(25, 26, 27, 28))))
    return time.perf_counter() - start


def three_row_pass(bundle: ec.ModelBundle, prompt: str, edits: list) -> object:
    """The effect meter before replay: baseline, knockout and control as three rows through the whole model."""
    with torch.inference_mode(), ec.intervene(bundle, *edits):
        return bundle.model(**encode(bundle, [prompt] * 3), logits_to_keep=1)


def main() -> None:
    bundle = ec.load_model()
    results = load_results(bundle.name)
    reading, kit = results.reading(), results.steering_kit(bundle)
    emotion = "anger"
    steered = Baseline("steered")
    prompt = steered.prompt(bundle, USER, emotion)
    shared = steered.edits(kit, emotion)
    selection = circuit_components(results.circuit(emotion))[:6]
    control = matched_random(selection, results.shape, random.Random(0))
    knocked, controlled = knockout(selection, "zero"), knockout(control, "zero")
    recorded = record(bundle, prompt, shared)
    deepest = [*selection, Component("neuron", 0, 0)]  # the slowest toggle: a part in the first layer re-runs every layer
    deep_knocked = knockout(deepest, "zero")
    deep_control = knockout(matched_random(deepest, results.shape, random.Random(0)), "zero")
    rows3 = [
        *(on_rows(e, (0, 1, 2)) for e in shared),
        *knockout(selection, "zero", rows=(1,)),
        *knockout(control, "zero", rows=(2,)),
    ]
    rows2 = [*(on_rows(e, (0, 1)) for e in shared), *knockout(selection, "zero", rows=(1,))]
    batch = encode(bundle, [prompt])

    def plain_generate() -> object:
        with torch.inference_mode():
            return bundle.model.generate(**batch, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)

    times = interleaved(
        {
            "meter": lambda: effect_meter(bundle, reading, recorded, knocked, controlled, extra_layers=(15,)),
            "meter, layer 0": lambda: effect_meter(bundle, reading, recorded, deep_knocked, deep_control, (15,)),
            "meter, new prompt": lambda: effect_meter(bundle, reading, record(bundle, prompt, shared), knocked, controlled, (15,)),
            "three-row pass": lambda: three_row_pass(bundle, prompt, rows3),
            "plain": plain_generate,
            "three rows": lambda: list(stream_replies(bundle, [prompt] * 3, SETTINGS, rows3, observe=reading.layers)),
            "two rows": lambda: list(stream_replies(bundle, [prompt] * 2, SETTINGS, rows2, observe=reading.layers)),
            "first token (3 rows)": lambda: first_token_seconds(bundle, [prompt] * 3, rows3),
        },
        repeats=5,
    )
    evaluation = [(steered.prompt(bundle, p.user, emotion), shared) for p in spread(neutral_prompts(load_skeletons("eval")), 12)]
    start = time.perf_counter()
    check = chance_check(bundle, reading, results, evaluation, emotion, selection, n_draws=20)
    chance_reading = time.perf_counter() - start
    judge = load_judge()
    start = time.perf_counter()
    judged = chance_check(bundle, reading, results, evaluation, emotion, selection, n_draws=20, judge=judge)
    chance_judged = time.perf_counter() - start

    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    lowest = min(part.layer for part in selection)
    toggle = f"effect meter on a toggle ({len(selection)} parts from layer {lowest}), median of 5:"
    print(f"{toggle:61s}{times['meter'] * 1000:6.0f} ms   (goal <= 200 ms)")
    print(f"effect meter on a toggle with a part in layer 0 (worst case):  {times['meter, layer 0'] * 1000:6.0f} ms")
    print(f"effect meter on a new prompt or baseline (record + replay):  {times['meter, new prompt'] * 1000:6.0f} ms")
    print(f"  the three-row full forward pass it replaces:               {times['three-row pass'] * 1000:6.0f} ms")
    print(f"first token of the Knockout generation (3 rows):             {times['first token (3 rows)'] * 1000:6.0f} ms   (goal <= 500 ms)")
    print(f"plain model.generate, batch 1, {TOKENS} tokens:                     {times['plain']:6.2f} s")
    print(f"Knockout generation (baseline + knocked out + control): {times['three rows'] / times['plain']:.2f}x plain")
    print(f"two-row side by side (baseline + knocked out):           {times['two rows'] / times['plain']:.2f}x plain   (goal <= 1.15x)")
    print(f"chance check, 12 scenarios x 21 sets, internal reading:  {chance_reading:6.1f} s   (goal <= 30 s)")
    print(f"chance check with judged replies:                        {chance_judged:6.1f} s   (goal <= 180 s)")
    low, high = min(check.random_reading_drops), max(check.random_reading_drops)
    print(f"  reading: selection drop {check.reading_drop:+.3f}; random drops {low:+.3f} to {high:+.3f}")
    low, high = min(judged.random_judge_drops), max(judged.random_judge_drops)
    print(f"  judged: selection drop {judged.judge_drop:+.3f}; random drops {low:+.3f} to {high:+.3f}")


if __name__ == "__main__":
    main()
