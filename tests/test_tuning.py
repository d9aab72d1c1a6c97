"""Tuning and calibration on a tiny model: the strength tuning picks is the best fluent setting, and the reading it
calibrates reads 0 on its own plain replies and 1 on each emotion's steered ones."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import torch

import emo_core as ec
from emo_core import tuning
from emo_core.baselines import Baseline, baseline_rows
from emo_core.calibration import calibrate_reading
from emo_core.generation import Reply
from emo_core.judge import LABELS
from emo_core.scenarios import EMOTIONS, neutral_prompts, spread, training_skeletons
from emo_core.scoring import SCORING_SETTINGS, Row, generate_rows
from emo_core.steering import SteeringKit, steering_circuit
from emo_core.tuning import MAX_DEGENERATE, STRENGTHS, layer_windows, tune_steering
from tests.conftest import tiny_model


@pytest.mark.parametrize("n_layers", [3, 6, 7, 12, 24, 30, 31, 32, 40])
def test_layer_windows_are_three_thirds_of_the_network_starting_at_a_sixth_a_third_and_a_half(n_layers: int) -> None:
    windows = layer_windows(n_layers)
    starts = [n_layers // 6, n_layers // 3, n_layers // 2]
    expected = [tuple(range(start, min(start + n_layers // 3 + 1, n_layers))) for start in starts]
    assert windows == list(dict.fromkeys(expected))  # in that order, each window once
    for window in windows:
        assert window == tuple(range(window[0], window[-1] + 1)) and 0 <= window[0] and window[-1] < n_layers


def test_layer_windows_of_the_built_in_models_thirty_layers() -> None:
    assert layer_windows(30) == [tuple(range(5, 16)), tuple(range(10, 21)), tuple(range(15, 26))]
    assert layer_windows(3) == [(0, 1), (1, 2)]  # the windows that start at 0 and 1 (a sixth of 3 rounds to 0, a half to 1)


@pytest.fixture(scope="module")
def tiny_kit(embedded: ec.ModelBundle) -> SteeringKit:
    """A steering kit on a tiny llama: random vectors per emotion and layer, and each emotion's steering circuit from random rankings."""
    bundle = ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")
    shape = bundle.shape
    gen = torch.Generator().manual_seed(0)
    n = len(EMOTIONS)
    circuits = {
        e: steering_circuit(
            e, torch.randn(shape.n_layers, shape.n_heads, generator=gen), torch.randn(shape.n_layers, shape.d_mlp, generator=gen)
        )
        for e in EMOTIONS
    }
    return SteeringKit(
        bundle,
        torch.randn(n, shape.n_layers, shape.d_model, generator=gen, dtype=torch.float64),
        torch.randn(n, shape.n_layers, shape.n_heads * shape.head_dim, generator=gen, dtype=torch.float64),
        torch.randn(n, shape.n_layers, shape.d_mlp, generator=gen, dtype=torch.float64),
        circuits,
    )


class LabelJudge:
    """Reads the one label word a text names ("... I feel anger ..."); neutral when it names none."""

    labels = LABELS

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.full((len(texts), len(LABELS)), 0.01)
        for row, text in enumerate(texts):
            named = [i for i, label in enumerate(LABELS) if f" {label} " in f" {text} "]
            probs[row, named[0] if named else LABELS.index("neutral")] = 0.94
        return probs


FLUENT = "Honestly, I feel {} about the whole plan for today."
BROKEN = "no no no no no no no no"
N_PROMPTS = 4


def test_tuning_picks_the_most_accurate_fluent_setting_and_the_weaker_strength_on_a_tie(
    tiny_kit: SteeringKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every setting (method, strength, window, emotion) gets a drawn number of broken and on-target replies; the table must
    name, per method and emotion, the setting a plain loop over those numbers picks. For joy no setting is fluent, so all
    compete."""
    rng = random.Random(4)
    planned: dict[tuple[str, str, str, str], tuple[int, int]] = {}  # (method, strength, layers, emotion) -> (broken, on target)

    def fake_generate(bundle: ec.ModelBundle, rows: Sequence[Row], *args: object, **kwargs: object) -> list[Reply]:
        replies = []
        for row in rows:
            tags = dict(row.tags)
            key = (tags["method"], tags["strength"], tags["layers"], row.emotion)
            if key not in planned:
                broken = rng.choice([0, 1, 2]) if row.emotion != "joy" else rng.choice([1, 2])
                planned[key] = (broken, rng.randint(0, N_PROMPTS - broken))
            index = sum(1 for reply in replies if reply[0] == key)
            replies.append((key, index))
        texts = []
        for key, index in replies:
            broken, hits = planned[key]
            texts.append(BROKEN if index < broken else FLUENT.format(key[3] if index < broken + hits else "neutral"))
        return [Reply(text, (1,), 1) for text in texts]

    monkeypatch.setattr(tuning, "generate_rows", fake_generate)
    skeletons = training_skeletons(N_PROMPTS)
    table = tune_steering(tiny_kit, LabelJudge(), skeletons, n_prompts=N_PROMPTS)

    assert list(table.columns) == ["method", "emotion", "layers", "strength", "accuracy", "degenerate"]
    n_windows = len(layer_windows(tiny_kit.bundle.shape.n_layers))
    assert len(table) == 2 * len(EMOTIONS)
    assert len(planned) == len(EMOTIONS) * (len(STRENGTHS["circuit"]) + n_windows * len(STRENGTHS["direction"]))
    for method in ("direction", "circuit"):
        for emotion in EMOTIONS:
            settings = [(key, counts) for key, counts in planned.items() if key[0] == method and key[3] == emotion]
            fluent = [s for s in settings if s[1][0] / N_PROMPTS <= MAX_DEGENERATE] or settings
            best = min(fluent, key=lambda s: (-s[1][1] / N_PROMPTS, float(s[0][1]), s[0][2]))
            (key, (broken, hits)) = best
            row = table[(table["method"] == method) & (table["emotion"] == emotion)].iloc[0]
            assert (row["layers"], row["strength"]) == (key[2], float(key[1])), (method, emotion, settings)
            assert row["accuracy"] == pytest.approx(hits / N_PROMPTS) and row["degenerate"] == pytest.approx(broken / N_PROMPTS)
    assert (table[table["emotion"] == "joy"]["degenerate"] > MAX_DEGENERATE).all()
    assert (table[table["method"] == "circuit"]["layers"] == "").all()
    windows = {",".join(map(str, window)) for window in layer_windows(tiny_kit.bundle.shape.n_layers)}
    assert set(table[table["method"] == "direction"]["layers"]) <= windows


def test_tuning_generates_each_setting_on_the_spread_training_prompts_with_its_own_edits(
    tiny_kit: SteeringKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Row] = []
    calls: list[tuple[object, dict]] = []

    def fake_generate(bundle: ec.ModelBundle, rows: Sequence[Row], *args: object, **kwargs: object) -> list[Reply]:
        seen.extend(rows)
        calls.append((bundle, kwargs))
        return [Reply(FLUENT.format(row.emotion), (1,), 1) for row in rows]

    monkeypatch.setattr(tuning, "generate_rows", fake_generate)
    skeletons = training_skeletons(3)
    progress = print  # any callable: tuning hands it on to the generation, which reports to it
    tune_steering(
        tiny_kit, LabelJudge(), skeletons, methods=("direction",), strengths={"direction": (1.0, 2.0)}, n_prompts=4, progress=progress
    )
    assert calls == [(tiny_kit.bundle, {"progress": progress, "desc": "tuning"})]
    chosen = spread(neutral_prompts(skeletons), 4)
    prompts = {ec.chat_prompt(tiny_kit.bundle, p.user, p.system) for p in chosen}
    assert {row.prompt for row in seen} == prompts  # each prompt with its own (emotion-free) system message
    users = [p.user for p in chosen]
    windows = layer_windows(tiny_kit.bundle.shape.n_layers)
    assert len(seen) == 2 * len(windows) * len(EMOTIONS) * len(users)
    for row in seen:
        tags = dict(row.tags)
        layers = tuple(int(x) for x in tags["layers"].split(","))
        assert layers in windows and tags["method"] == "direction"
        assert any(user in row.prompt for user in users)
        (edit,) = row.interventions
        (expected,) = tiny_kit.interventions("direction", row.emotion, float(tags["strength"]), layers)
        assert (edit.alpha, sorted(edit.vectors)) == (expected.alpha, sorted(expected.vectors))
        assert all(torch.equal(edit.vectors[layer], expected.vectors[layer]) for layer in layers)


def test_the_calibrated_reading_reads_zero_on_its_plain_replies_and_one_on_each_emotions_steered_ones(
    tiny_kit: SteeringKit, capsys: pytest.CaptureFixture
) -> None:
    table = pd.DataFrame(
        [{"method": "direction", "emotion": e, "layers": "0,1,2", "strength": 3.0, "accuracy": 1.0, "degenerate": 0.0} for e in EMOTIONS]
    )
    kit = tiny_kit.with_tuning(table)
    prompts = spread(neutral_prompts(training_skeletons(1)), 2)
    reading = calibrate_reading(kit, prompts)
    assert "reading:" in capsys.readouterr().err  # without a progress callback, a terminal bar named for the stage
    assert (reading.one > reading.zero + 0.1).all(), (reading.zero, reading.one)  # steering at the read layer raises every reading
    assert reading.layers == ec.reading.reading_layers(kit.bundle.shape.n_layers)
    plain = Baseline("plain")
    rows = [Row(plain.prompt(kit.bundle, p.user), "neutral") for p in prompts] + baseline_rows(
        Baseline("steered", "direction"), kit, prompts
    )
    replies = generate_rows(kit.bundle, rows, SCORING_SETTINGS, observe=reading.layers)
    levels = torch.stack([reading(reply.states).mean(dim=0) for reply in replies])  # [rows, E]
    n = len(prompts)
    torch.testing.assert_close(levels[:n].mean(dim=0), torch.zeros(len(EMOTIONS), dtype=levels.dtype), atol=1e-6, rtol=0)
    for e in range(len(EMOTIONS)):
        assert levels[(e + 1) * n : (e + 2) * n, e].mean().item() == pytest.approx(1.0, abs=1e-6)
    assert not torch.allclose(levels[n:], levels[n:].new_ones(()))  # single replies scatter around the calibrated means


def test_calibration_reports_its_progress_to_the_callback_instead_of_a_bar(tiny_kit: SteeringKit, capsys: pytest.CaptureFixture) -> None:
    table = pd.DataFrame([{"method": "direction", "emotion": e, "layers": "0", "strength": 1.0} for e in EMOTIONS])
    prompts = spread(neutral_prompts(training_skeletons(1)), 1)
    calls: list[tuple[int, int]] = []
    calibrate_reading(tiny_kit.with_tuning(table), prompts, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (len(prompts) * (1 + len(EMOTIONS)),) * 2
    assert "reading:" not in capsys.readouterr().err


def _fixed_generate(plan: dict[tuple[str, str], tuple[int, int]], n: int):
    """A stand-in for ``generate_rows``: per (strength, emotion), ``(broken, on target)`` of its ``n`` replies."""

    def generate(bundle: ec.ModelBundle, rows: Sequence[Row], *args: object, **kwargs: object) -> list[Reply]:
        texts, seen = [], {}
        for row in rows:
            key = (dict(row.tags)["strength"], row.emotion)
            index = seen[key] = seen.get(key, -1) + 1
            broken, hits = plan.get(key, (0, 0))
            texts.append(BROKEN if index < broken else FLUENT.format(row.emotion if index < broken + hits else "neutral"))
        return [Reply(text, (1,), 1) for text in texts]

    return generate


def test_a_setting_with_exactly_the_allowed_share_of_broken_replies_is_fluent(
    tiny_kit: SteeringKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 20  # one broken reply in 20 is exactly MAX_DEGENERATE
    assert 1 / n == MAX_DEGENERATE
    plan = {("2.0", e): (0, 5) for e in EMOTIONS} | {("3.0", e): (1, 15) for e in EMOTIONS} | {("4.0", e): (2, 18) for e in EMOTIONS}
    monkeypatch.setattr(tuning, "generate_rows", _fixed_generate(plan, n))
    table = tune_steering(tiny_kit, LabelJudge(), training_skeletons(10), methods=("circuit",), n_prompts=n)
    assert table["strength"].tolist() == [3.0] * len(EMOTIONS)  # 4.0 is more accurate but breaks 10%
    assert table["accuracy"].tolist() == [0.75] * len(EMOTIONS) and table["degenerate"].tolist() == [0.05] * len(EMOTIONS)


def test_with_a_second_judge_a_setting_counts_only_the_replies_both_judges_read_as_its_emotion(
    tiny_kit: SteeringKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {("2.0", e): (0, 2) for e in EMOTIONS} | {("3.0", e): (0, 4) for e in EMOTIONS}
    monkeypatch.setattr(tuning, "generate_rows", _fixed_generate(plan, N_PROMPTS))

    class Doubter(LabelJudge):
        """Agrees with the first judge except on anger, which it reads as fear."""

        def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
            return super().predict_proba([text.replace(" anger ", " fear ") for text in texts])

    skeletons = training_skeletons(N_PROMPTS)
    one = tune_steering(tiny_kit, LabelJudge(), skeletons, methods=("circuit",), n_prompts=N_PROMPTS)
    two = tune_steering(tiny_kit, LabelJudge(), skeletons, methods=("circuit",), n_prompts=N_PROMPTS, second=Doubter())
    assert one["accuracy"].tolist() == [1.0] * len(EMOTIONS) and one["strength"].tolist() == [3.0] * len(EMOTIONS)
    angry = two["emotion"] == "anger"
    assert two[angry][["accuracy", "strength"]].values.tolist() == [[0.0, 2.0]]  # no hit anywhere: the weakest strength
    assert two[~angry]["accuracy"].tolist() == [1.0] * (len(EMOTIONS) - 1)
