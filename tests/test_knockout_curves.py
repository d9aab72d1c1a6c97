"""How the knockout curves batch their replays: every row once, in order, no batch running more layers than it needs to."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import emo_core as ec
from emo_core import knockout_curves
from emo_core.attribution import lm_loss, training_openings
from emo_core.baselines import Baseline, baseline_rows
from emo_core.causal import OTHERS_WEIGHT
from emo_core.forced import ForcedReply, forced_pass
from emo_core.generation import Reply
from emo_core.interventions import HeadAblation, NeuronAblation
from emo_core.judge import read_labelled
from emo_core.knockout_curves import (
    BATCH_OVERHEAD_ROWS,
    OPENINGS_PATH,
    RANKINGS,
    CurveSettings,
    _batches,
    _Plan,
    _readings,
    _rows,
    _summary,
    baseline_replies,
    evaluation_openings,
    harm_report,
    ranked_parts,
    reading_curves,
)
from emo_core.parts import Component, knockout, matched_random, top_parts
from emo_core.reading import EmotionReading
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS, neutral_prompts, spread, training_skeletons
from emo_core.scoring import Row
from emo_core.stats import bootstrap_interval, difference_interval
from tests.conftest import FakeGenerate, exact, made_up_tokens, switched_off


def test_batches_cover_every_row_once_and_split_where_the_lowest_layer_jumps() -> None:
    lows = [0] * 40 + [20] * 10 + [25] * 3
    batches = _batches(lows, 28, 32)
    assert [i for start, end in batches for i in range(start, end)] == list(range(len(lows)))
    assert all(0 < end - start <= 32 for start, end in batches)
    assert all(lows[start] == 20 or lows[start] == 25 for start, end in batches if end > 40)  # late rows never ride with layer 0
    assert _batches([5], 28, 32) == [(0, 1)] and _batches([], 28, 32) == []


def test_readings_replayed_per_baseline_row_equal_full_passes_and_parts_above_the_reading_leave_it_exactly(
    tiny: ec.ModelBundle,
) -> None:
    units, zero = torch.randn(6, 2, tiny.shape.d_model, dtype=tiny.dtype), torch.zeros(6, dtype=tiny.dtype)
    reading = EmotionReading((0, 1), units, zero, zero + 1)
    prompts = [ec.chat_prompt(tiny, "I lost my keys."), ec.chat_prompt(tiny, "The bus was late.")]
    base_rows = [ForcedReply(prompts[0], (11, 12, 13)), ForcedReply(prompts[1], (21, 22))]
    plan = _Plan()
    changes = [NeuronAblation(((1, 0),)), HeadAblation(((0, 1),)), NeuronAblation(((2, 5),)), NeuronAblation(((0, 2), (1, 3)))]
    for b, change in [(0, changes[0]), (1, changes[1]), (0, changes[2]), (1, changes[3]), (0, changes[1])]:
        plan.add(b, (change,), ())
    base, values = _readings(tiny, reading, base_rows, plan, 2, None)
    rows = [replace(base_rows[b], edits=change) for b, change in zip(plan.bases, plan.changes, strict=True)]
    close = {"atol": 10 * exact(tiny), "rtol": 1e-6}  # some families compute their norms in float32
    torch.testing.assert_close(values, reading(forced_pass(tiny, rows, reading.layers)[0]), **close)
    torch.testing.assert_close(base, reading(forced_pass(tiny, base_rows, reading.layers)[0]), **close)
    assert torch.equal(values[2], base[0])  # a neuron in layer 2 cannot move a reading of layers 0 and 1
    assert not torch.allclose(values[0], base[0])


def _cost(lows: list[int], top: int, batches: list[tuple[int, int]]) -> int:
    return sum((top - lows[start] + 1) * (end - start + BATCH_OVERHEAD_ROWS) for start, end in batches)


def _cheapest(lows: list[int], top: int, size: int) -> int:
    """The least cost of any split of ``lows`` into consecutive batches of at most ``size`` rows, by trying them all."""
    best = {0: 0}
    for end in range(1, len(lows) + 1):
        best[end] = min(best[start] + _cost(lows, top, [(start, end)]) for start in range(max(0, end - size), end))
    return best[len(lows)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=9).map(sorted), st.integers(1, 4))
def test_batches_split_the_rows_at_the_least_cost(lows: list[int], size: int) -> None:
    batches = _batches(lows, 9, size)
    assert [i for start, end in batches for i in range(start, end)] == list(range(len(lows)))
    assert all(0 < end - start <= size for start, end in batches)
    assert _cost(lows, 9, batches) == _cheapest(lows, 9, size)


def test_a_lone_early_row_gets_its_own_batch_when_that_is_cheaper() -> None:
    assert _batches([0, 20, 20, 20], 20, 4) == [(0, 1), (1, 4)]


def test_readings_report_progress_over_every_knockout_and_take_rows_without_any(tiny: ec.ModelBundle) -> None:
    """Knockouts that cannot move the reading (above its layers, or switching nothing off) count as done and read the baseline."""
    units, zero = torch.randn(6, 2, tiny.shape.d_model, dtype=tiny.dtype), torch.zeros(6, dtype=tiny.dtype)
    reading = EmotionReading((0, 1), units, zero, zero + 1)
    rows = [ForcedReply(ec.chat_prompt(tiny, text), (11, 12)) for text in ("One.", "Two.", "Three.")]
    plan = _Plan()
    plan.add(0, (NeuronAblation(((1, 0),)),), ())  # the reading's top layer: it moves the reading
    plan.add(0, (NeuronAblation(((2, 0),)),), ())  # above it: exactly the baseline
    plan.add(0, (), ())  # nothing switched off
    plan.add(2, (HeadAblation(((0, 1),)),), ())  # row 1 has no knockouts at all
    seen = []
    base, values = _readings(tiny, reading, rows, plan, 4, lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (4, 4)]
    assert torch.equal(values[1], base[0]) and torch.equal(values[2], base[0])
    assert not torch.allclose(values[0], base[0]) and not torch.allclose(values[3], base[2])
    torch.testing.assert_close(base, reading(forced_pass(tiny, rows, reading.layers)[0]), atol=10 * exact(tiny), rtol=1e-6)


def test_summaries_pass_on_the_bar_itself_and_fail_when_an_interval_reaches_zero() -> None:
    curve = CurveSettings(bootstrap=400)
    on_the_bar = _summary(np.array([0.75, 0.75, 0.75]), np.array([0.25, 0.25, 0.25]), curve)  # exactly three times random
    assert on_the_bar["ratio"] == 3 and on_the_bar["three_times_random"]
    top_touches_zero = _summary(np.array([0.0, 0.0, 0.0, 4.0]), np.array([-1.0, -1.0, -1.0, -1.0]), curve, paired=True)
    assert top_touches_zero["top_ci95"][0] == 0 < top_touches_zero["difference_ci95"][0]
    assert not top_touches_zero["three_times_random"]
    difference_touches_zero = _summary(np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, -9.0]), curve, paired=True)
    assert difference_touches_zero["difference_ci95"][0] == 0 < difference_touches_zero["top_ci95"][0]
    assert not difference_touches_zero["three_times_random"]
    entry = _summary(np.array([0.3, 0.1, 0.2]), np.array([0.05, -0.02, 0.0, 0.01]), curve)
    assert entry == _summary(np.array([0.3, 0.1, 0.2]), np.array([0.05, -0.02, 0.0, 0.01]), curve)  # seeded: the same every time
    assert entry["top_ci95"] == bootstrap_interval([0.3, 0.1, 0.2], 400, 0)
    assert entry["random_ci95"] == bootstrap_interval([0.05, -0.02, 0.0, 0.01], 400, 0)
    assert (entry["n_top"], entry["n_random"]) == (3, 4)


def test_knockout_summaries_apply_the_three_times_random_bar() -> None:
    settings = CurveSettings(bootstrap=200)
    clear = _summary(np.array([0.30, 0.32, 0.28]), np.array([0.05, -0.02, 0.04, 0.01]), settings)
    assert clear["three_times_random"] and clear["difference_ci95"][0] > 0
    raised = _summary(np.array([0.10, 0.12]), np.array([-0.05, -0.03]), settings)  # random sets raise it: counts as 0
    assert raised["ratio"] is None and raised["three_times_random"]
    weak = _summary(np.array([0.10, 0.12]), np.array([0.05, 0.04]), settings)
    assert not weak["three_times_random"]


# --- the curves themselves, on a tiny model and a synthetic cache, against direct teacher-forced passes ---------------


PROMPTS = neutral_prompts(training_skeletons(4))


class RecordDraws:
    """Wraps ``matched_random``: every random set drawn, with the top set it matches, in the order drawn."""

    def __init__(self) -> None:
        self.draws: dict[tuple, list[list[Component]]] = {}

    def __call__(self, components, shape, rng):
        drawn = matched_random(components, shape, rng)
        self.draws.setdefault(tuple(components), []).append(drawn)
        return drawn


def _reading_of(bundle: ec.ModelBundle, reading: EmotionReading, rows: list[ForcedReply]) -> torch.Tensor:
    return reading(forced_pass(bundle, rows, reading.layers)[0])


def _with(row: ForcedReply, parts: list[Component], means) -> ForcedReply:
    return replace(row, edits=(*row.edits, *knockout(parts, "mean", means)))


def _top(results: Results, ranking: str, kind: str, emotion: str, k: int, baseline: str = "steered") -> list[Component]:
    """The top-k parts, read from the cache directly (not through ``ranked_parts``)."""
    e = EMOTIONS.index(emotion)
    if ranking == "causal":
        scores = results.causal_scores(baseline, kind, "mean")[e]
    else:
        scores = results.tensor("head_scores" if kind == "head" else "neuron_scores")[e]
    return [c for c, _ in top_parts(scores, kind, k)]


def test_ranked_parts_are_each_emotions_own_top_parts(tiny_results: Results) -> None:
    for emotion in EMOTIONS:
        for ranking in RANKINGS:
            for kind in ("head", "neuron"):
                assert ranked_parts(tiny_results, ranking, "steered", kind, emotion, "mean", 3) == _top(
                    tiny_results, ranking, kind, emotion, 3
                )
    assert ranked_parts(tiny_results, "causal", "asked", "neuron", "fear", "zero", 4) == [
        c for c, _ in top_parts(tiny_results.causal_scores("asked", "neuron", "zero")[EMOTIONS.index("fear")], "neuron", 4)
    ]


def test_evaluation_openings_come_from_the_evaluation_file_by_label_and_never_from_training() -> None:
    openings = evaluation_openings()
    texts, labels = read_labelled(OPENINGS_PATH)
    training = {text for texts_ in training_openings(per_emotion=100).values() for text in texts_}
    for emotion in EMOTIONS:
        own = [text for text, label in zip(texts, labels, strict=True) if label == emotion]
        assert openings[emotion] and set(openings[emotion]) <= set(own) and len(openings[emotion]) == min(100, len(own))
        assert not set(openings[emotion]) & training


def test_baseline_replies_reuse_what_the_run_has_and_generate_only_the_rest(tiny_llama, tiny_results, monkeypatch) -> None:
    fake = FakeGenerate(tiny_llama)
    monkeypatch.setattr(knockout_curves, "generate_rows", fake)
    rows = baseline_rows(Baseline("asked"), tiny_results.steering_kit(tiny_llama), PROMPTS[:2], emotions=("happiness", "fear"))
    had = Reply("known", (7, 8), 3)
    replies = baseline_replies(tiny_llama, rows, {"asked": {(rows[1].prompt, "happiness"): had}}, "asked")
    assert replies[1] is had and [r.token_ids for i, r in enumerate(replies) if i != 1] == [made_up_tokens(rows[i]) for i in (0, 2, 3)]
    assert fake.calls == [([rows[0], rows[2], rows[3]], "asked baselines")]
    fake.calls.clear()
    assert [r.token_ids for r in baseline_replies(tiny_llama, rows, {"steered": {(rows[1].prompt, "happiness"): had}}, "asked")] == [
        made_up_tokens(row) for row in rows
    ]
    baseline_replies(tiny_llama, rows[1:2], {"asked": {(rows[1].prompt, "happiness"): had}}, "asked")
    assert len(fake.calls) == 1  # nothing missing: nothing generated


def test_reading_curves_equal_direct_passes_for_every_emotion_ranking_kind_and_k(tiny_llama, tiny_results, monkeypatch) -> None:
    monkeypatch.setattr(knockout_curves, "generate_rows", FakeGenerate(tiny_llama))
    record = RecordDraws()
    monkeypatch.setattr(knockout_curves, "matched_random", record)
    settings = CurveSettings(prompts=2, draws=3, target_draws=5, target_ks={"head": 2, "neuron": 3}, ks=(1, 2), bootstrap=50, batch_size=3)
    kit, reading, means = tiny_results.steering_kit(tiny_llama), tiny_results.reading(), tiny_results.neutral_means
    curves = reading_curves(tiny_llama, tiny_results, kit, reading, PROMPTS, "steered", settings)
    rows = baseline_rows(Baseline("steered"), kit, spread(PROMPTS, 2))
    base_rows = [ForcedReply(row.prompt, made_up_tokens(row), row.interventions) for row in rows]
    base = _reading_of(tiny_llama, reading, base_rows)
    n = 2
    assert curves["n_prompts"] == n
    for e, emotion in enumerate(EMOTIONS):
        assert curves["baseline_reading"][emotion] == pytest.approx(float(base[e * n : e * n + n, e].mean()), abs=1e-5)
    close = {"abs": 1e-4}
    signs = set()  # whether the other emotions' own readings fell, per target set
    queues = {top: list(draws) for top, draws in record.draws.items()}
    draws_of = {}  # a top set shared by two curve points gives its draws to them in the order the curves are drawn
    for emotion in EMOTIONS:
        for ranking in RANKINGS:
            for kind, target_k in (("head", 2), ("neuron", 3)):
                for k in sorted({1, 2, target_k} if ranking == "causal" else {1, 2}):
                    count = settings.target_draws if ranking == "causal" and k == target_k else settings.draws
                    queue = queues[tuple(_top(tiny_results, ranking, kind, emotion, k))]
                    draws_of[(emotion, ranking, kind, k)], queue[:] = queue[:count], queue[count:]
    assert not any(queues.values())
    for ranking in RANKINGS:
        for kind, target_k in (("head", 2), ("neuron", 3)):
            assert set(curves[ranking][kind]) == ({"1", "2", str(target_k)} if ranking == "causal" else {"1", "2"})
            for k_text, by_emotion in curves[ranking][kind].items():
                k = int(k_text)
                for e, emotion in enumerate(EMOTIONS):
                    entry = by_emotion[emotion]
                    top = _top(tiny_results, ranking, kind, emotion, k)
                    assert entry["units"] == [[c.layer, c.index] for c in top]
                    own = list(range(e * n, e * n + n))
                    knocked = _reading_of(tiny_llama, reading, [_with(base_rows[i], top, means) for i in own])
                    drops = base[own] - knocked  # [n, E]
                    assert entry["n_top"] == n and entry["top_drop"] == pytest.approx(float(drops[:, e].mean()), **close)
                    others = [f for f in range(len(EMOTIONS)) if f != e]
                    assert entry["others_same"] == pytest.approx(float(drops[:, others].mean()), **close)
                    target = ranking == "causal" and k == target_k
                    draws = draws_of[(emotion, ranking, kind, k)]
                    assert len(draws) == (settings.target_draws if target else settings.draws) == entry["n_random"]
                    random_rows = [_with(base_rows[own[d % n]], drawn, means) for d, drawn in enumerate(draws)]
                    random_drops = base[[own[d % n] for d in range(len(draws))], e] - _reading_of(tiny_llama, reading, random_rows)[:, e]
                    assert entry["random_drop"] == pytest.approx(float(random_drops.mean()), **close)
                    assert entry["ratio"] == (entry["top_drop"] / entry["random_drop"] if entry["random_drop"] > 0 else None)
                    assert ("others_own" in entry) == target
                    if target:
                        cross = [f * n + p for f in others for p in range(n)]
                        knocked_own = _reading_of(tiny_llama, reading, [_with(base_rows[i], top, means) for i in cross])
                        own_drops = [float(base[i, i // n] - knocked_own[j, i // n]) for j, i in enumerate(cross)]
                        assert entry["others_own"] == pytest.approx(float(np.mean(own_drops)), **close)
                        specific = entry["top_drop"] > 0 and entry["top_drop"] >= OTHERS_WEIGHT * max(entry["others_own"], 0)
                        assert entry["specific"] == specific
                        positive = entry["others_own"] > 0
                        assert entry["specificity"] == (pytest.approx(entry["top_drop"] / entry["others_own"]) if positive else None)
                        signs.add(positive)
                        lo, hi = entry["others_own_ci95"]
                        assert lo <= entry["others_own"] <= hi
    assert True in signs  # some target set lowered the other emotions: the ratio was checked, not only its absence


def test_every_random_draw_is_a_matched_set_of_its_own(tiny_llama, tiny_results, monkeypatch) -> None:
    monkeypatch.setattr(knockout_curves, "generate_rows", FakeGenerate(tiny_llama))
    record = RecordDraws()
    monkeypatch.setattr(knockout_curves, "matched_random", record)
    settings = CurveSettings(prompts=1, draws=4, target_draws=4, ks=(2,), rankings=("causal",), bootstrap=20)
    reading_curves(tiny_llama, tiny_results, tiny_results.steering_kit(tiny_llama), tiny_results.reading(), PROMPTS, "steered", settings)
    count = lambda parts: sorted((c.kind, c.layer) for c in parts)  # noqa: E731
    for top, draws in record.draws.items():
        assert all(count(drawn) == count(top) and not set(drawn) & set(top) for drawn in draws)
        assert len({tuple(drawn) for drawn in draws}) > 1  # a fresh draw each time, not one set reused


def test_harm_report_is_each_sets_loss_against_the_plain_loss_computed_once_per_distinct_set(tiny_llama, tiny_results, monkeypatch) -> None:
    calls = []

    def counted(bundle, texts, edits=()):
        calls.append(tuple(edits))
        return lm_loss(bundle, texts, edits)

    monkeypatch.setattr(knockout_curves, "lm_loss", counted)
    a, b, c = Component("head", 1, 0), Component("neuron", 2, 5), Component("neuron", 0, 1)
    prompts = PROMPTS[:3]
    report = harm_report(tiny_llama, tiny_results, prompts, {"x": [a, b], "y": [b, a], "z": [c]}, "zero")
    texts = [Baseline("plain").prompt(tiny_llama, p.user) for p in prompts]
    total, count = lm_loss(tiny_llama, texts)
    assert report["base_loss"] == pytest.approx(total / count)
    for name, parts in (("x", [a, b]), ("z", [c])):
        loss = lm_loss(tiny_llama, texts, knockout(parts, "zero"))[0] / count
        assert report[name]["loss"] == pytest.approx(loss) and report[name]["relative_rise"] == pytest.approx(loss / (total / count) - 1)
    assert report["y"] == report["x"] and len(calls) == 3  # the plain loss, then each distinct set once
    assert report["x"]["loss"] != report["z"]["loss"]
    mean = harm_report(tiny_llama, tiny_results, prompts, {"x": [a, b]}, "mean")["x"]["loss"]
    assert mean == pytest.approx(lm_loss(tiny_llama, texts, knockout([a, b], "mean", tiny_results.neutral_means))[0] / count)
    assert mean != pytest.approx(report["x"]["loss"])


def _p_target(row: Row) -> float:
    return (zlib.crc32(f"{row.prompt}|{row.interventions!r}".encode()) % 1000) / 1000


def _degenerate(row: Row) -> bool:
    return zlib.crc32(repr(row.interventions).encode()) % 3 == 0


JUDGE = object()  # stands in for the emotion judge, which ``fake_scores`` checks it is handed


def fake_scores(judge, rows, replies, second=None) -> pd.DataFrame:
    assert judge is JUDGE and len(rows) == len(replies)
    return pd.DataFrame({"p_target": [_p_target(row) for row in rows], "degenerate": [_degenerate(row) for row in rows]})


def test_judged_knockouts_pair_each_prompts_top_and_random_reply_with_its_own_baseline(tiny_llama, tiny_results, monkeypatch) -> None:
    fake = FakeGenerate(tiny_llama)
    monkeypatch.setattr(knockout_curves, "generate_rows", fake)
    monkeypatch.setattr(knockout_curves, "score_replies", fake_scores)
    record = RecordDraws()
    monkeypatch.setattr(knockout_curves, "matched_random", record)
    settings = CurveSettings(judged_prompts=3, judged=(("neuron", 2), ("head", 1)), bootstrap=50)
    kit, means = tiny_results.steering_kit(tiny_llama), tiny_results.neutral_means
    out = knockout_curves.judged_knockouts(tiny_llama, tiny_results, kit, judge=JUDGE, prompts=PROMPTS, settings=settings)
    base_rows = baseline_rows(Baseline("steered"), kit, spread(PROMPTS, 3))
    n = 3
    assert out["baseline"] == "steered" and out["n_prompts"] == n
    (_, base_desc), (knocked, desc) = fake.calls
    assert (base_desc, desc) == ("steered baselines", "judged knockouts")
    for e, emotion in enumerate(EMOTIONS):
        own = base_rows[e * n : e * n + n]
        assert out["baseline_p_target"][emotion] == pytest.approx(np.mean([_p_target(row) for row in own]))
        for kind, k in settings.judged:
            top = _top(tiny_results, "causal", kind, emotion, k)
            draws = record.draws[tuple(top)]
            assert len(draws) == n
            top_rows = [Row(row.prompt, emotion, (*row.interventions, *knockout(top, "mean", means))) for row in own]
            random_rows = [Row(r.prompt, emotion, (*r.interventions, *knockout(d, "mean", means))) for r, d in zip(own, draws, strict=True)]
            key = lambda row: (row.prompt, row.emotion, frozenset(switched_off(row)), repr(row.interventions[0]))  # noqa: E731
            assert {key(row) for row in top_rows + random_rows} <= {key(row) for row in knocked}
            entry = out[kind][str(k)][emotion]
            top_drops = [_p_target(b) - _p_target(t) for b, t in zip(own, top_rows, strict=True)]
            random_drops = [_p_target(b) - _p_target(r) for b, r in zip(own, random_rows, strict=True)]
            assert entry["top_drop"] == pytest.approx(np.mean(top_drops)) and entry["random_drop"] == pytest.approx(np.mean(random_drops))
            assert entry["degenerate_top"] == pytest.approx(np.mean([_degenerate(row) for row in top_rows]))
            assert entry["n_top"] == entry["n_random"] == n
            assert entry["difference_ci95"] == difference_interval(np.array(top_drops), np.array(random_drops), 50, 0, True)
    assert len(knocked) == len(EMOTIONS) * n * 2 * len(settings.judged)
    again = knockout_curves.judged_knockouts(tiny_llama, tiny_results, kit, judge=JUDGE, prompts=PROMPTS, settings=settings)
    assert again == out  # the random sets come from the seed: the same report every run


def test_the_curves_report_gathers_every_baseline_the_harm_of_every_named_set_and_the_judged_knockouts(
    tiny_llama, tiny_results, monkeypatch
) -> None:
    fake = FakeGenerate(tiny_llama)
    monkeypatch.setattr(knockout_curves, "generate_rows", fake)
    monkeypatch.setattr(knockout_curves, "score_replies", fake_scores)
    settings = CurveSettings(
        prompts=1, draws=1, target_draws=2, ks=(1,), baselines=("steered", "asked"), harm_prompts=2, judged_prompts=1, bootstrap=20
    )
    kit = tiny_results.steering_kit(tiny_llama)
    steered = baseline_rows(Baseline("steered"), kit, spread(PROMPTS, 1))
    known = {"steered": {(row.prompt, row.emotion): Reply("known", made_up_tokens(row), 5) for row in steered}}
    stages = []
    report = knockout_curves.knockout_curves(tiny_llama, tiny_results, JUDGE, PROMPTS, settings, lambda *a: stages.append(a[0]), known)
    assert [desc for _, desc in fake.calls] == ["asked baselines", "judged knockouts"]  # the known replies were not generated again
    assert report["mode"] == "mean" and report["ks"] == [1] and set(report["reading"]) == {"steered", "asked"}
    for baseline in ("steered", "asked"):
        direct = reading_curves(tiny_llama, tiny_results, kit, tiny_results.reading(), PROMPTS, baseline, settings)
        assert report["reading"][baseline] == direct
    names = {f"{b}/{e}/{kind}/{k}" for b in ("steered", "asked") for e in EMOTIONS for kind, k in (("head", 2), ("neuron", 4))}
    names |= {f"steered/{e}/neuron/16" for e in EMOTIONS}
    assert set(report["harm"]) == names | {"base_loss"}
    sets = {f"asked/{e}/head/2": _top(tiny_results, "causal", "head", e, 2, "asked") for e in EMOTIONS}
    sets |= {f"steered/{e}/neuron/16": _top(tiny_results, "causal", "neuron", e, 16) for e in EMOTIONS}
    direct = harm_report(tiny_llama, tiny_results, spread(PROMPTS, 2), sets, "mean")
    assert {name: report["harm"][name] for name in [*sets, "base_loss"]} == direct
    assert set(report["judged"]["neuron"]["16"]) == set(EMOTIONS)
    assert {"curves: steered", "curves: asked", "curves: judged"} <= set(stages)
    assert "judged" not in knockout_curves.knockout_curves(
        tiny_llama, tiny_results, JUDGE, PROMPTS, replace(settings, judged=()), None, known
    )


def test_only_the_continued_baseline_opens_with_the_evaluation_openings(tiny_llama, tiny_results) -> None:
    kit, prompts = tiny_results.steering_kit(tiny_llama), PROMPTS[:2]
    openings = evaluation_openings()
    continued = _rows(kit, "continued", prompts)
    assert continued == baseline_rows(Baseline("continued"), kit, prompts, openings=openings)
    for row in continued:
        assert any(row.prompt.endswith(opening) for opening in openings[row.emotion])
    steered = _rows(kit, "steered", prompts)  # its edits compare by identity: compare what the model is given
    assert [row.prompt for row in steered] == [row.prompt for row in baseline_rows(Baseline("steered"), kit, prompts)]
    assert all(not any(row.prompt.endswith(opening) for opening in openings[row.emotion]) for row in steered)
