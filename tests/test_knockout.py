"""Knockout runs: baselines, matched controls, the effect meter and the chance check, each against a direct recomputation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.forced import ForcedReply, forced_pass
from emo_core.interventions import NeuronAblation
from emo_core.knockout import chance_check, effect_meter, reply_meter
from emo_core.parts import Component, knockout, matched_random, parse_tokens
from emo_core.placement import place_on_map
from emo_core.replay import record
from emo_core.results import Results
from emo_core.scoring import Row, generate_rows
from tests.conftest import last_token_states

SELECTION = parse_tokens(["L1H0,L1H2,L2N3,L2N7,L0N1"])[0]


@pytest.fixture
def prompt(tiny_llama: ec.ModelBundle) -> str:
    return Baseline("plain").prompt(tiny_llama, "I lost my wallet\nSomeone handed it in.")


def test_baselines(tiny_llama: ec.ModelBundle, tiny_results: Results) -> None:
    kit = tiny_results.steering_kit(tiny_llama)
    assert "Always reply in fear" in Baseline("asked").prompt(tiny_llama, "x", "fear")
    assert "Always reply" not in Baseline("steered").prompt(tiny_llama, "x", "fear")
    assert Baseline("plain").edits(kit, "fear") == [] and Baseline("asked").edits(kit, "fear") == []
    (steer,) = Baseline("steered", "direction").edits(kit, "fear")
    assert steer.alpha == 1.0 and set(steer.vectors) == {1, 2}
    assert Baseline("steered", "direction", strength=2.5).edits(kit, "fear")[0].alpha == 2.5


def test_mean_ablation_sets_parts_to_the_cached_means(tiny_llama: ec.ModelBundle, tiny_results: Results, prompt: str) -> None:
    edits = knockout([Component("neuron", 2, 3), Component("head", 1, 2)], "mean", tiny_results.neutral_means)
    batch = ec.generation.encode(tiny_llama, [prompt])
    with torch.inference_mode(), ec.intervene(tiny_llama, *edits), ec.capture(tiny_llama, ["mlp_post", "attn_z"], layers=[1, 2]) as seen:
        tiny_llama.model(**batch)
    assert torch.allclose(seen[("mlp_post", 2)][0, :, 3], tiny_results.tensor("means.mlp_post")[2, 3].expand(batch["input_ids"].shape[1]))
    d = tiny_llama.shape.head_dim
    head_mean = tiny_results.tensor("means.attn_z")[1, 2 * d : 3 * d]
    assert torch.allclose(seen[("attn_z", 1)][0, :, 2 * d : 3 * d], head_mean.expand(batch["input_ids"].shape[1], d))


def test_effect_meter_rows_equal_separate_passes(tiny_llama: ec.ModelBundle, tiny_results: Results, prompt: str) -> None:
    reading = tiny_results.reading()
    kit = tiny_results.steering_kit(tiny_llama)
    shared = Baseline("steered").edits(kit, "anger")
    knocked = knockout(SELECTION, "zero")
    control = knockout(matched_random(SELECTION, tiny_results.shape, random.Random(0)), "zero")
    meter = effect_meter(tiny_llama, reading, record(tiny_llama, prompt, shared), knocked, control, extra_layers=(0,))
    for value, edits in ((meter.baseline, shared), (meter.knocked_out, shared + knocked), (meter.control, shared + control)):
        alone = last_token_states(tiny_llama, [prompt], edits, reading.layers)
        torch.testing.assert_close(value, reading(alone)[0], rtol=1e-4, atol=1e-4)
    assert meter.states.shape == (3, 1, tiny_llama.shape.d_model)
    assert not torch.allclose(meter.baseline, meter.knocked_out)


def test_the_reply_meter_reads_each_row_as_its_own_teacher_forced_pass(
    tiny_llama: ec.ModelBundle, tiny_results: Results, prompt: str
) -> None:
    """Row by row it is the forced pass of the baseline's reply with that row's parts off; with no parts, all three agree."""
    reading = tiny_results.reading()
    shared = Baseline("steered").edits(tiny_results.steering_kit(tiny_llama), "anger")
    reply = ec.generate(tiny_llama, [prompt], ec.GenerationSettings(max_new_tokens=6), shared)[0]
    knocked = knockout(SELECTION, "zero")
    control = knockout(matched_random(SELECTION, tiny_results.shape, random.Random(0)), "zero")
    levels = reply_meter(tiny_llama, reading, prompt, reply.token_ids, shared, knocked, control)
    for row, extra in enumerate(((), knocked, control)):
        states, _, _ = forced_pass(tiny_llama, [ForcedReply(prompt, tuple(reply.token_ids), tuple(extra))], reading.layers, shared)
        torch.testing.assert_close(levels[row], reading(states)[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(levels[0], levels[1])
    same = reply_meter(tiny_llama, reading, prompt, reply.token_ids, shared, [], [])
    torch.testing.assert_close(same[0], same[1])
    torch.testing.assert_close(same[0], same[2])


class FixedJudge:
    """Gives every reply the same probabilities."""

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.linspace(0.1, 0.2, 7), (len(texts), 1))


def test_chance_check_compares_the_selection_with_matched_random_sets(
    tiny_llama: ec.ModelBundle, tiny_results: Results, prompt: str
) -> None:
    reading = tiny_results.reading()
    other = Baseline("plain").prompt(tiny_llama, "My flight was delayed\nThey gave us vouchers.")
    prompts = [(prompt, []), (other, [])]

    def drop(parts: list[Component]) -> float:  # the anger reading's mean drop over the prompts, one pass per prompt and set
        values = []
        for text, _ in prompts:
            base = reading(last_token_states(tiny_llama, [text], [], reading.layers))[0, 0]
            knocked = reading(last_token_states(tiny_llama, [text], knockout(parts, "zero"), reading.layers))[0, 0]
            values.append(float(base - knocked))
        return float(np.mean(values))

    check = chance_check(tiny_llama, reading, tiny_results, prompts, "anger", SELECTION, n_draws=3, seed=5)
    assert len(check.random_reading_drops) == 3 and check.n_prompts == 2
    assert check.reading_drop == pytest.approx(drop(SELECTION), abs=1e-4)
    first_random = matched_random(SELECTION, tiny_results.shape, random.Random(5))
    assert check.random_reading_drops[0] == pytest.approx(drop(first_random), abs=1e-4)
    settings = ec.GenerationSettings(max_new_tokens=3)
    judged = chance_check(tiny_llama, reading, tiny_results, prompts, "anger", SELECTION, n_draws=2, judge=FixedJudge(), settings=settings)
    assert judged.judge_drop == pytest.approx(0.0) and judged.random_judge_drops == (0.0, 0.0)


def test_place_on_map_puts_a_mapped_point_where_it_is() -> None:
    rng = np.random.default_rng(0)
    coordinates, positions = rng.normal(size=(50, 6)), rng.normal(size=(50, 2))
    placed = place_on_map(coordinates[[7, 20]], coordinates, positions)
    np.testing.assert_allclose(placed, positions[[7, 20]], atol=1e-3)
    middle = place_on_map(coordinates[:1] * 0 + 1e6, coordinates, positions)
    assert np.all(np.isfinite(middle))


class LengthJudge:
    """Reads more anger in some texts than others: a probability that depends on the text, so drops are not all zero."""

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        probs = np.full((len(texts), 7), 0.05)
        probs[:, 0] = [0.1 + (len(text) % 7) / 10 for text in texts]
        return probs


def test_the_judged_chance_check_compares_each_knockouts_judged_reply_with_the_baseline_and_reports_progress(
    tiny_llama: ec.ModelBundle, tiny_results: Results, prompt: str
) -> None:
    reading = tiny_results.reading()
    shared = [NeuronAblation(((0, 3),), "zero")]  # a baseline edit every reply of the prompt keeps
    other = Baseline("plain").prompt(tiny_llama, "My flight was delayed\nThey gave us vouchers.")
    prompts = [(prompt, shared), (other, [])]
    settings = ec.GenerationSettings(max_new_tokens=6)
    calls: list[tuple[int, int]] = []
    check = chance_check(
        tiny_llama,
        reading,
        tiny_results,
        prompts,
        "anger",
        SELECTION,
        "mean",
        n_draws=2,
        seed=4,
        judge=LengthJudge(),
        settings=settings,
        progress=lambda done, total: calls.append((done, total)),
    )
    rng = random.Random(4)
    sets = [SELECTION, *(matched_random(SELECTION, tiny_results.shape, rng) for _ in range(2))]
    means = tiny_results.neutral_means
    rows = [Row(text, "anger", (*edits, *knockout(parts, "mean", means))) for text, edits in prompts for parts in [[], *sets]]
    texts = [reply.text for reply in generate_rows(tiny_llama, rows, settings)]
    p = LengthJudge().predict_proba(texts)[:, 0].reshape(2, 4)
    drops = (p[:, :1] - p[:, 1:]).mean(axis=0)
    assert check.judge_drop == pytest.approx(drops[0]) and check.random_judge_drops == pytest.approx(tuple(drops[1:]))
    assert len(set(np.round(drops, 6))) > 1  # the judge tells the replies apart
    assert calls[:2] == [(1, 4), (2, 4)] and calls[-1] == (4, 4) and all(total == 4 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert check.emotion == "anger" and check.n_prompts == 2
    mean_off = knockout(SELECTION, "mean", means)
    direct = [
        float(reading(last_token_states(tiny_llama, [text], edits, reading.layers))[0, 0])
        - float(reading(last_token_states(tiny_llama, [text], [*edits, *mean_off], reading.layers))[0, 0])
        for text, edits in prompts
    ]
    assert check.reading_drop == pytest.approx(np.mean(direct), abs=1e-4)  # each prompt read with its own baseline edits
    zero = chance_check(tiny_llama, reading, tiny_results, prompts, "anger", SELECTION, n_draws=2, seed=4)
    assert zero.reading_drop != pytest.approx(check.reading_drop)  # mean ablation is not the default zero ablation
