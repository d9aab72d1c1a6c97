"""Attribution patching: every estimate equals the exact first-order change of a real (dosed) ablation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import emo_core as ec
from emo_core import attribution
from emo_core.attribution import (
    CausalSettings,
    causal_effects,
    lm_loss,
    loss_attribution,
    opening_sentences,
    own_effects,
    reading_attribution,
    token_losses,
    training_openings,
)
from emo_core.baselines import Baseline, baseline_rows
from emo_core.causal import HARM_BASE, causal_scores, effect_name, harm_name, others_mean
from emo_core.forced import ForcedReply, forced_pass, forced_recording, forced_replay
from emo_core.generation import Reply, encode
from emo_core.interventions import ComponentEdit, HeadAblation, NeuronAblation
from emo_core.judge import TRAIN_PATH, read_labelled
from emo_core.parts import NeutralMeans, top_parts
from emo_core.reading import EmotionReading, unit_directions
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS, neutral_prompts, spread, training_skeletons
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from tests.conftest import FakeGenerate, exact, tiny_model

LAYERS = (1, 2)


def _reading(bundle: ec.ModelBundle, seed: int = 0) -> EmotionReading:
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(6, bundle.shape.n_layers, bundle.shape.d_model, generator=gen, dtype=torch.float64)
    units = unit_directions(vectors, LAYERS).to(bundle.dtype)
    return EmotionReading(LAYERS, units, torch.zeros(6, dtype=bundle.dtype), torch.full((6,), 2.0, dtype=bundle.dtype))


def _means(bundle: ec.ModelBundle, seed: int = 1) -> NeutralMeans:
    gen = torch.Generator().manual_seed(seed)
    shape = bundle.shape
    return NeutralMeans(
        torch.randn(shape.n_layers, shape.n_heads * shape.head_dim, generator=gen).to(bundle.dtype),
        torch.randn(shape.n_layers, shape.d_mlp, generator=gen).to(bundle.dtype),
    )


def _rows(bundle: ec.ModelBundle) -> list[ForcedReply]:
    steer = ec.ResidualAddition({0: torch.ones(bundle.shape.d_model, dtype=bundle.dtype)}, alpha=0.5)
    prompts = [ec.chat_prompt(bundle, "I lost my keys.", "Be brief."), ec.chat_prompt(bundle, "My train was late again today.")]
    return [ForcedReply(prompts[0], (11, 12, 13, 14), (steer,)), ForcedReply(prompts[1], (21, 22))]


def test_knockouts_replayed_on_a_recorded_forced_row_read_what_a_forced_pass_reads(tiny: ec.ModelBundle) -> None:
    """Prompt and reply calls over the replay's own cache, the row's steering kept, only the layers from the lowest change up."""
    head, neurons = (
        HeadAblation(((1, 0),)),
        NeuronAblation(((2, 3), (1, 1)), "mean", {layer: torch.ones(tiny.shape.d_mlp, dtype=tiny.dtype) for layer in (1, 2)}),
    )
    single = ForcedReply(ec.chat_prompt(tiny, "Be quick."), (31,))  # one reply token: the prompt call alone
    for row in [*_rows(tiny), single]:
        recording = forced_recording(tiny, row)
        got = forced_replay(tiny, recording, [replace(head, rows=(0,)), replace(neurons, rows=(2,))], 3, LAYERS)
        rows = [replace(row, edits=(*row.edits, head)), row, replace(row, edits=(*row.edits, neurons))]
        want = forced_pass(tiny, rows, LAYERS)[0]
        torch.testing.assert_close(got, want, atol=10 * exact(tiny), rtol=0)
        torch.testing.assert_close(forced_replay(tiny, recording, [], 1, LAYERS)[0], want[1], atol=10 * exact(tiny), rtol=0)
        assert not torch.allclose(got[0], got[1]) and not torch.allclose(got[2], got[1])


def _dosed(bundle: ec.ModelBundle, kind: str, mode: str, layer: int, unit: int, means: NeutralMeans, dose: float) -> ComponentEdit:
    """Move one unit a fraction ``dose`` of the way to its ablated value, at every position."""
    width = bundle.shape.head_dim if kind == "head" else 1
    channels = tuple(range(unit * width, (unit + 1) * width))
    target = means.of(kind)[layer, list(channels)] if mode == "mean" else torch.zeros(width, dtype=bundle.dtype)
    return ComponentEdit("attn_z" if kind == "head" else "mlp_post", layer, channels, scale=1 - dose, add=dose * target)


def _reading_metric(bundle: ec.ModelBundle, reading: EmotionReading, rows: list[ForcedReply], weights: torch.Tensor, edits=()) -> float:
    states, _, _ = forced_pass(bundle, rows, reading.layers, edits)
    return float((reading(states.to(reading.units.dtype)) * weights).sum())


def _slope(metric, dosed, dose: float = 1e-2) -> float:
    """d metric / d dose at 0, by Richardson-extrapolated central differences (error O(dose^4)).

    The doses are not tiny because norms compute in float32 even in a float64 model, which puts a
    noise floor of about 1e-7 under every metric.
    """

    def central(h: float) -> float:
        return (metric([dosed(h)]) - metric([dosed(-h)])) / (2 * h)

    return (4 * central(dose / 2) - central(dose)) / 3


@pytest.mark.parametrize(("kind", "layer", "unit"), [("head", 0, 1), ("head", 2, 3), ("neuron", 1, 5), ("neuron", 2, 40)])
def test_reading_attribution_is_the_first_order_change_of_a_dosed_ablation(tiny: ec.ModelBundle, kind: str, layer: int, unit: int) -> None:
    reading, means, rows = _reading(tiny), _means(tiny), _rows(tiny)
    weights = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 0.5, 0, 0, -0.5]], dtype=tiny.dtype)
    estimate = reading_attribution(tiny, reading, rows, weights, means)
    for mode in ("zero", "mean"):
        finite = _slope(
            lambda edits: _reading_metric(tiny, reading, rows, weights, edits),
            lambda dose, mode=mode: _dosed(tiny, kind, mode, layer, unit, means, dose),
        )
        got = float(estimate[kind][mode][:, layer, unit].sum())
        assert got == pytest.approx(finite, rel=1e-2, abs=1e-4), (mode, got, finite)


def test_loss_attribution_is_the_first_order_change_of_a_dosed_ablation(tiny: ec.ModelBundle) -> None:
    means = _means(tiny)
    prompts = [ec.chat_prompt(tiny, "I lost my keys."), ec.chat_prompt(tiny, "The shop was closed when I arrived, so I went home.")]
    total, count, estimate = loss_attribution(tiny, prompts, means)
    assert (total, count) == pytest.approx(lm_loss(tiny, prompts), rel=1e-5)
    for kind, layer, unit in (("head", 1, 2), ("neuron", 0, 7)):
        for mode in ("zero", "mean"):
            finite = _slope(
                lambda edits: lm_loss(tiny, prompts, edits)[0],
                lambda dose, kind=kind, layer=layer, unit=unit, mode=mode: _dosed(tiny, kind, mode, layer, unit, means, dose),
            )
            assert float(estimate[kind][mode][layer, unit]) == pytest.approx(finite, rel=1e-2, abs=1e-3), (kind, mode)


def test_a_full_ablation_is_the_dose_one_edit(tiny: ec.ModelBundle) -> None:
    """Dose 1 of the dosed edit is the real switch-off (zero and mean), so the estimate's slope is the knockout's."""
    reading, means, rows = _reading(tiny), _means(tiny), _rows(tiny)
    weights = torch.eye(6, dtype=tiny.dtype)[:2]
    head_means = dict(enumerate(means.heads))
    for mode in ("zero", "mean"):
        real = ec.HeadAblation(((2, 1),), mode, head_means if mode == "mean" else None)
        full = _dosed(tiny, "head", mode, 2, 1, means, 1.0)
        assert _reading_metric(tiny, reading, rows, weights, [real]) == pytest.approx(_reading_metric(tiny, reading, rows, weights, [full]))


def test_forced_pass_reads_what_generation_observed(embedded: ec.ModelBundle) -> None:
    """Teacher-forcing a steered reply (prompt call, then reply call over one KV cache) gives the states generation saw."""
    bundle = ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")
    steer = ec.ResidualAddition({0: torch.ones(bundle.shape.d_model, dtype=bundle.dtype)}, alpha=2.0)
    prompts = [ec.chat_prompt(bundle, "I lost my keys."), ec.chat_prompt(bundle, "My train was late again today, and the next one too.")]
    settings = ec.GenerationSettings(max_new_tokens=5)
    rows = [Row(prompts[0], "anger", (steer,)), Row(prompts[1], "fear")]
    replies = generate_rows(bundle, rows, settings, observe=LAYERS)
    forced = [ForcedReply(row.prompt, reply.token_ids, row.interventions) for row, reply in zip(rows, replies, strict=True)]
    states, _, _ = forced_pass(bundle, forced, LAYERS)
    for i, reply in enumerate(replies):
        torch.testing.assert_close(states[i], reply.states.mean(dim=0).to(states.dtype), atol=1e-5, rtol=1e-6)


def test_scores_ask_for_specificity_and_drop_harmful_parts() -> None:
    own = torch.zeros(6, 1, 4)
    own[0, 0, 0] = 1.0  # lowers anger only
    own[:, 0, 1] = 1.0  # lowers every emotion alike
    own[0, 0, 2] = 2.0  # lowers anger most, but breaks the model
    harm = torch.tensor([[0.0, 0.0, 0.5, 0.0]])
    score = causal_scores(own, harm, base_loss=3.0)
    assert others_mean(own)[0, 0, 1] == pytest.approx(1.0)
    assert score[0, 0].argmax() == 0
    assert score[0, 0, 1] < 0 and score[0, 0, 2] == float("-inf")
    assert [(c.layer, c.index) for c, _ in top_parts(score[0], "head", 10)] == [(0, 0), (0, 3), (0, 1)]


def test_an_older_cache_without_causal_rankings_names_the_rebuild(tmp_path) -> None:
    from emo_core.causal import effect_name
    from emo_core.results import load_results
    from emo_core.store import CacheError
    from tests.synthetic_cache import write_synthetic_cache

    write_synthetic_cache(tmp_path, "older-model")
    results = load_results("older-model", tmp_path)
    del results.cache.arrays[effect_name("asked", "neuron", "mean")]  # as a cache written before that ranking would be
    with pytest.raises(CacheError, match="has no causal rankings") as error:
        results.causal_ranking("anger", "neuron", "mean", "asked")
    assert results.rebuild in str(error.value) and "python -m emo_core build" in results.rebuild
    assert len(results.causal_ranking("anger", "neuron", "mean", "steered")) == results.shape["n_layers"] * results.shape["d_mlp"]
    with pytest.raises(ValueError, match="choose a baseline"):
        results.causal_effects("shouted")


@pytest.mark.slow  # the real model
def test_estimates_track_real_knockouts_on_the_built_in_model(embedded: ec.ModelBundle) -> None:
    """Spot check on SmolLM2: the heads estimated to lower the steered emotion most really lower it, by about as much."""
    from emo_core.baselines import Baseline
    from emo_core.parts import knockout
    from emo_core.results import load_results

    results = load_results(embedded.name)
    reading = results.reading()
    kit = results.steering_kit(embedded)
    means = results.neutral_means
    steered = Baseline("steered", "direction")
    steer = tuple(steered.edits(kit, "sadness"))
    prompt = steered.prompt(embedded, "I waited an hour for the bus this morning.\nIt finally came.")
    (reply,) = generate_rows(embedded, [Row(prompt, "sadness", steer)], ec.GenerationSettings(max_new_tokens=12))
    row = ForcedReply(prompt, reply.token_ids, steer)
    weights = torch.zeros(1, 6)
    weights[0, 1] = 1.0
    estimate = -reading_attribution(embedded, reading, [row], weights, means)["head"]["mean"][0]  # drop of the sadness reading
    base = float(reading(forced_pass(embedded, [row], reading.layers)[0])[0, 1])
    for part, estimated in top_parts(estimate, "head", 3):
        edits = (*steer, *knockout([part], "mean", means))
        real = base - float(reading(forced_pass(embedded, [ForcedReply(prompt, reply.token_ids, edits)], reading.layers)[0])[0, 1])
        assert real > 0, part
        assert 0.5 * estimated < real < 2 * estimated, (part, estimated, real)


def test_parts_above_the_readings_layers_have_no_effect_and_the_lower_ones_do(tiny: ec.ModelBundle) -> None:
    """A part can only move a reading through the layers it reads: the estimate is exactly 0 above them (no gradient at all)."""
    base = _reading(tiny)
    reading = EmotionReading((0,), base.units[:, :1], base.zero, base.one)
    estimate = reading_attribution(tiny, reading, _rows(tiny), torch.eye(6, dtype=tiny.dtype)[:2], _means(tiny))
    for kind in ("head", "neuron"):
        for mode in ("zero", "mean"):
            assert torch.count_nonzero(estimate[kind][mode][:, 1:]) == 0 and torch.count_nonzero(estimate[kind][mode][:, 0]) > 0


def test_edits_shared_by_every_row_count_as_each_rows_own(tiny: ec.ModelBundle) -> None:
    reading, means, rows = _reading(tiny), _means(tiny), _rows(tiny)
    weights = torch.eye(6, dtype=tiny.dtype)[[1, 4]]
    steer = ec.ResidualAddition({1: torch.linspace(-1, 1, tiny.shape.d_model, dtype=tiny.dtype)}, alpha=2.0)
    shared = reading_attribution(tiny, reading, rows, weights, means, shared=(steer,))
    own = reading_attribution(tiny, reading, [replace(row, edits=(*row.edits, steer)) for row in rows], weights, means)
    plain = reading_attribution(tiny, reading, rows, weights, means)
    for kind in ("head", "neuron"):
        torch.testing.assert_close(shared[kind]["mean"], own[kind]["mean"], atol=10 * exact(tiny), rtol=1e-5)
        assert not torch.allclose(shared[kind]["zero"], plain[kind]["zero"])


def test_the_loss_counts_every_real_token_after_the_first_of_each_prompt_however_they_are_padded(tiny_llama: ec.ModelBundle) -> None:
    """On one family: padding is encoded the same way for every family."""
    tiny = tiny_llama
    short, long = ec.chat_prompt(tiny, "Hi."), ec.chat_prompt(tiny, "The shop was closed when I arrived, so I went home again.")
    lengths = [len(encode(tiny, [text])["input_ids"][0]) for text in (short, long)]
    together = lm_loss(tiny, [short, long])
    alone = [lm_loss(tiny, [text]) for text in (short, long)]
    assert together[1] == sum(lengths) - 2 == alone[0][1] + alone[1][1]
    assert together[0] == pytest.approx(alone[0][0] + alone[1][0], rel=1e-5)
    assert loss_attribution(tiny, [short, long], _means(tiny))[1] == together[1]


def test_losses_are_computed_in_at_least_float32() -> None:
    logits = torch.randn(2, 4, 10).to(torch.bfloat16)
    batch = {"input_ids": torch.randint(0, 10, (2, 4)), "attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])}
    losses = token_losses(logits, batch)
    assert losses.dtype == torch.float32 and len(losses) == 5
    assert token_losses(logits.double(), batch).dtype == torch.float64


def test_opening_sentences_are_spread_over_each_emotions_own_sentences(tmp_path) -> None:
    path = tmp_path / "openings.jsonl"
    records = [{"text": f"{label} sentence {i}.", "label": label} for i in range(10) for label in (*EMOTIONS, "neutral")]
    path.write_text("\n".join(json.dumps(record) for record in records), encoding="utf-8")
    chosen = opening_sentences(path, per_emotion=3)
    assert set(chosen) == set(EMOTIONS)
    for emotion in EMOTIONS:
        assert chosen[emotion] == [f"{emotion} sentence {i}." for i in (0, 3, 6)]
    assert opening_sentences(path, per_emotion=20)["fear"] == [f"fear sentence {i}." for i in range(10)]  # fewer than asked: all
    assert opening_sentences(path, per_emotion=1)["fear"] == ["fear sentence 0."]


def test_training_openings_are_the_judges_training_sentences() -> None:
    texts, labels = read_labelled(TRAIN_PATH)
    openings = training_openings()
    for emotion in EMOTIONS:
        assert len(openings[emotion]) == 4 and set(openings[emotion]) <= {
            t for t, label in zip(texts, labels, strict=True) if label == emotion
        }
    assert training_openings(2) == {emotion: sentences[:2] for emotion, sentences in opening_sentences(TRAIN_PATH, 2).items()}


def _forced_rows(bundle: ec.ModelBundle) -> tuple[list[Row], list[Reply]]:
    steer = ec.ResidualAddition({0: torch.ones(bundle.shape.d_model, dtype=bundle.dtype)}, alpha=0.5)
    texts = ["I lost my keys.", "My train was late.", "The cake fell over.", "We won the quiz.", "It rained all day."]
    emotions = ["anger", "fear", "anger", "sadness", "anger"]
    rows = [
        Row(ec.chat_prompt(bundle, text), emotion, (steer,) if i % 2 else ())
        for i, (text, emotion) in enumerate(zip(texts, emotions, strict=True))
    ]
    replies = [Reply("", tuple(range(100 + 7 * i, 103 + 7 * i + i % 2)), 0) for i in range(len(rows))]
    return rows, replies


def test_own_effects_average_each_emotions_rows_whatever_the_batch_size(tiny_llama: ec.ModelBundle) -> None:
    reading, means = _reading(tiny_llama), _means(tiny_llama)
    rows, replies = _forced_rows(tiny_llama)
    seen = []
    by_two = own_effects(tiny_llama, reading, rows, replies, means, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    whole = own_effects(tiny_llama, reading, rows, replies, means, batch_size=8)
    for kind in ("head", "neuron"):
        for mode in ("zero", "mean"):
            torch.testing.assert_close(by_two[kind][mode], whole[kind][mode], atol=1e-5, rtol=1e-4)
            for e, emotion in enumerate(EMOTIONS):
                mine = [i for i, row in enumerate(rows) if row.emotion == emotion]
                if not mine:
                    assert torch.count_nonzero(whole[kind][mode][e]) == 0
                    continue
                direct = [
                    reading_attribution(
                        tiny_llama,
                        reading,
                        [ForcedReply(rows[i].prompt, replies[i].token_ids, rows[i].interventions)],
                        torch.eye(6)[[e]],
                        means,
                    )[kind][mode][0]
                    for i in mine
                ]
                torch.testing.assert_close(whole[kind][mode][e], torch.stack(direct).mean(0), atol=1e-5, rtol=1e-4)


def test_causal_effects_store_each_baselines_drops_and_the_harm_per_token(
    tiny_llama: ec.ModelBundle, tiny_results: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGenerate(tiny_llama)
    monkeypatch.setattr(attribution, "generate_rows", fake)
    kit, reading, means = tiny_results.steering_kit(tiny_llama), tiny_results.reading(), tiny_results.neutral_means
    prompts = neutral_prompts(training_skeletons(4))
    openings = {emotion: [f"Well, {emotion}."] for emotion in EMOTIONS}
    settings = CausalSettings(prompts=2, harm_prompts=3, batch_size=2, baselines=("steered", "continued"))
    stages = []
    out = causal_effects(kit, reading, means, prompts, openings, settings, lambda *call: stages.append(call))
    assert [desc for _, desc in fake.calls] == ["steered replies", "continued replies"]
    assert {name for name, *_ in stages} == {
        "causal: steered replies",
        "causal: continued replies",
        "causal: steered",
        "causal: continued",
        "causal: harm",
    }
    assert [call for call in stages if call[0] == "causal: harm"] == [("causal: harm", 0, 3), ("causal: harm", 2, 3)]
    assert ("causal: steered replies", 12, 12) in stages  # 2 prompts x 6 emotions
    names = {effect_name(b, kind, mode) for b in ("steered", "continued") for kind in ("head", "neuron") for mode in ("zero", "mean")}
    names |= {harm_name(kind, mode) for kind in ("head", "neuron") for mode in ("zero", "mean")} | {HARM_BASE}
    assert set(out) == names
    for baseline in ("steered", "continued"):
        rows = baseline_rows(Baseline(baseline), kit, spread(prompts, 2), openings=openings)
        replies = fake(tiny_llama, rows, SCORING_SETTINGS)
        direct = own_effects(tiny_llama, reading, rows, replies, means, batch_size=12)
        for kind in ("head", "neuron"):
            torch.testing.assert_close(out[effect_name(baseline, kind, "mean")], -direct[kind]["mean"], atol=1e-5, rtol=1e-4)
    texts = [Baseline("plain").prompt(tiny_llama, p.user) for p in spread(prompts, 3)]
    total, count, harm = loss_attribution(tiny_llama, texts, means)
    assert float(out[HARM_BASE][0]) == pytest.approx(total / count, rel=1e-5)
    for kind in ("head", "neuron"):
        torch.testing.assert_close(out[harm_name(kind, "zero")], harm[kind]["zero"] / count, atol=1e-6, rtol=1e-4)
