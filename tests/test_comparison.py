"""The rows a knockout is judged by (``knockout.comparison_rows``), their tally, and the prepared knockouts read back from a
cache: properties that hold for any parts, scenarios and seeds."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from scipy.stats import fisher_exact

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.interventions import HeadAblation, NeuronAblation
from emo_core.knockout import VARIANTS, Tally, comparison_rows, tally
from emo_core.parts import Component, matched_random, parse_tokens
from emo_core.prepared import PrepareSettings, candidate_parts, choose
from emo_core.results import Results
from tests.conftest import switched_off

USERS = ["I lost my keys.\nA neighbour found them.", "The bus was late.\nIt never came.", "I baked bread.\nIt rose."]


def _parts(rng: random.Random, shape: dict[str, int], n: int) -> list[Component]:
    pool = [Component("head", layer, i) for layer in range(shape["n_layers"]) for i in range(shape["n_heads"])]
    pool += [Component("neuron", layer, i) for layer in range(shape["n_layers"]) for i in range(shape["d_mlp"])]
    return rng.sample(pool, n)


@pytest.mark.parametrize("seed", range(5))
def test_comparison_rows_give_each_scenario_its_baseline_knockout_and_a_fresh_matched_draw(tiny_llama: ec.ModelBundle, seed: int) -> None:
    shape = vars(tiny_llama.shape)
    rng = random.Random(seed)
    parts = _parts(rng, shape, rng.randint(1, 4))
    rows = comparison_rows(tiny_llama, None, Baseline("plain"), USERS, "fear", parts, "zero", seed=seed)
    assert len(rows) == len(USERS) * len(VARIANTS)
    draws = random.Random(seed)
    for s, user in enumerate(USERS):
        trio = rows[3 * s : 3 * s + 3]
        assert [dict(row.tags)["variant"] for row in trio] == list(VARIANTS)
        assert {dict(row.tags)["scenario"] for row in trio} == {str(s)}
        assert len({row.prompt for row in trio}) == 1 and user in trio[0].prompt
        assert switched_off(trio[0]) == set() and switched_off(trio[1]) == set(parts)
        control = switched_off(trio[2])
        assert control == set(matched_random(parts, shape, draws))  # the stream's next draw, one per scenario, in order
        assert not control & set(parts)
        for kind in ("head", "neuron"):
            for layer in range(shape["n_layers"]):
                n = sum(c.kind == kind and c.layer == layer for c in parts)
                assert sum(c.kind == kind and c.layer == layer for c in control) == n
        assert set(parse_tokens(dict(trio[2].tags)["parts"].split())[0]) == control  # the tag names what was switched off
    again = comparison_rows(tiny_llama, None, Baseline("plain"), USERS, "fear", parts, "zero", seed=seed)
    assert [row.tags for row in again] == [row.tags for row in rows]  # the same call draws the same sets


def test_without_parts_or_control_only_those_rows_are_made(tiny_llama: ec.ModelBundle) -> None:
    plain = comparison_rows(tiny_llama, None, Baseline("asked"), USERS, "anger", [], "zero")
    assert [dict(row.tags)["variant"] for row in plain] == ["baseline"] * len(USERS)
    assert all("anger" in row.prompt for row in plain)  # asked puts the request in the prompt
    parts = [Component("neuron", 1, 2)]
    no_control = comparison_rows(tiny_llama, None, Baseline("plain"), USERS, "anger", parts, "zero", control=False)
    assert [dict(row.tags)["variant"] for row in no_control] == ["baseline", "knocked_out"] * len(USERS)


def _scores(rows: list[tuple[str, str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["variant", "scenario", "predicted", "degenerate"]).assign(emotion="sadness")


@pytest.mark.parametrize("seed", range(20))
def test_the_tally_counts_losses_only_where_the_baseline_carried_the_emotion(seed: int) -> None:
    rng = random.Random(seed)
    labels = ["sadness", "sadness", "anger", "neutral"]
    rows, expected = (
        [],
        {"carried": 0, "removed": 0, "random_removed": 0, "degenerate": 0, "random_degenerate": 0, "baseline_degenerate": 0},
    )
    n = rng.randint(1, 12)
    for s in range(n):
        base, knocked, drawn = (rng.choice(labels) for _ in range(3))
        broken = [rng.random() < 0.2 for _ in range(3)]
        rows += [("baseline", str(s), base, broken[0]), ("knocked_out", str(s), knocked, broken[1]), ("random", str(s), drawn, broken[2])]
        carried = base == "sadness" and not broken[0]
        expected["carried"] += carried
        expected["removed"] += carried and knocked != "sadness"
        expected["random_removed"] += carried and drawn != "sadness"
        expected["degenerate"] += broken[1]
        expected["random_degenerate"] += broken[2]
        expected["baseline_degenerate"] += broken[0]
    counted = tally(_scores(rows))
    assert counted.scenarios == n
    assert {key: getattr(counted, key) for key in expected} == expected
    assert 0 <= counted.random_share <= 1 and 0 <= counted.removed_share <= 1
    assert 0 <= counted.p_value <= 1
    without_random = tally(_scores([row for row in rows if row[0] != "random"]))
    assert (without_random.random_removed, without_random.random_degenerate) == (0, 0)
    assert without_random.baseline_degenerate == expected["baseline_degenerate"]


def test_the_p_value_is_fishers_one_sided_and_falls_as_the_gap_grows() -> None:
    p = [Tally(12, 10, removed, 1, 0, 0).p_value for removed in range(1, 11)]
    assert p == sorted(p, reverse=True) and p[-1] < 0.001 < 0.5 < p[0]
    expected = fisher_exact([[9, 1], [1, 9]], alternative="greater").pvalue
    assert Tally(12, 10, 9, 1, 0, 0).p_value == pytest.approx(expected)
    assert Tally(12, 0, 0, 0, 0, 0).p_value == 1.0  # nothing carried, nothing to test


def test_candidate_parts_take_the_top_of_each_kind_outside_the_excluded(tiny_results: Results) -> None:
    def ranking(emotion: str, kind: str) -> list[Component]:
        return tiny_results.ranked_parts(emotion, kind, 1000)

    top = candidate_parts(ranking, "fear", 2, 3, frozenset())
    assert top == ranking("fear", "head")[:2] + ranking("fear", "neuron")[:3]
    excluded = frozenset(top[:1] + top[2:3])
    kept = candidate_parts(ranking, "fear", 2, 3, excluded)
    assert not set(kept) & excluded and len(kept) == 5
    assert (
        kept
        == [c for c in ranking("fear", "head") if c not in excluded][:2] + [c for c in ranking("fear", "neuron") if c not in excluded][:3]
    )


def test_prepared_knockouts_are_read_back_with_their_baseline(tiny_results: Results, tiny_llama: ec.ModelBundle) -> None:
    prepared = tiny_results.prepared("sadness")
    assert prepared.parts == tuple(parse_tokens(["L1H0", "L2N3", "L2N5"])[0]) and prepared.size == "1 head and 2 neurons"
    assert prepared.baseline == Baseline("steered", "direction", 1.0) and prepared.mode == "mean"
    kit = tiny_results.steering_kit(tiny_llama)
    assert tiny_results.fluent_strength("direction", "sadness") >= kit.settings("direction", "sadness")["strength"]
    assert tiny_results.fluent_strength("circuit", "sadness") == kit.settings("circuit", "sadness")["strength"]


@pytest.mark.parametrize("seed", range(10))
def test_choose_picks_the_best_eligible_candidate_per_emotion(seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for emotion in ("anger", "fear"):
        for heads, neurons in ((0, 64), (8, 64), (0, 128)):
            removed, drawn = rng.random(), rng.random()
            rows.append(
                {
                    "emotion": emotion,
                    "method": "direction",
                    "factor": rng.choice([1.0, 1.5]),
                    "heads": heads,
                    "neurons": neurons,
                    "prompts": 16,
                    "carried": rng.randint(0, 16),
                    "removed": removed,
                    "random_removed": drawn,
                    "degenerate": rng.randint(0, 3) / 16,
                    "baseline_degenerate": rng.randint(0, 3) / 16,
                    "score": removed - drawn,
                }
            )
    settings = PrepareSettings()
    picked = choose(pd.DataFrame(rows), settings)
    for _, group in picked.groupby("emotion"):
        eligible = (group["carried"] >= 8) & (group["degenerate"] <= 2 / 16) & (group["baseline_degenerate"] <= 2 / 16)
        assert (group["eligible"] == eligible).all()
        pool = group[eligible] if eligible.any() else group
        assert group["chosen"].sum() == 1 and group.loc[group["chosen"], "score"].item() == pool["score"].max()


def test_circuit_steering_pushes_its_circuit_and_nothing_else_does(tiny_results: Results, tiny_llama: ec.ModelBundle) -> None:
    kit = tiny_results.steering_kit(tiny_llama)
    pushed = Baseline("steered", "circuit").pushes(kit, "anger")
    circuit = kit.circuits["anger"]
    assert pushed == {Component("head", layer, i) for layer, i, _ in circuit.heads} | {
        Component("neuron", layer, i) for layer, i, _ in circuit.neurons
    }
    for other in (Baseline("steered", "direction"), Baseline("asked"), Baseline("plain")):
        assert other.pushes(kit, "anger") == frozenset()
    ranked = tiny_results.ranked_parts("anger", "neuron", 5, pushed)
    assert len(ranked) == 5 and not set(ranked) & pushed


def test_steered_rows_carry_the_kits_steering_before_the_knockout_and_the_defaults_are_mean_ablation_and_seed_0(
    tiny_llama: ec.ModelBundle, tiny_results: Results
) -> None:
    kit = tiny_results.steering_kit(tiny_llama)
    parts = [Component("head", 1, 0), Component("neuron", 2, 1)]
    steered = Baseline("steered", "direction")
    shared = steered.edits(kit, "fear")
    assert shared
    rows = comparison_rows(tiny_llama, kit, steered, USERS, "fear", parts, means=tiny_results.neutral_means)
    for row in rows:
        assert row.emotion == "fear"
        head = row.interventions[: len(shared)]
        assert [type(edit) for edit in head] == [type(edit) for edit in shared]
        for mine, theirs in zip(head, shared, strict=True):
            assert sorted(mine.vectors) == sorted(theirs.vectors) and all(
                torch.equal(mine.vectors[k], theirs.vectors[k]) for k in mine.vectors
            )
        assert all(edit.mode == "mean" for edit in row.interventions[len(shared) :])
    assert [row.tags for row in rows] == [
        row.tags for row in comparison_rows(tiny_llama, kit, steered, USERS, "fear", parts, seed=0, means=tiny_results.neutral_means)
    ]
    plain = comparison_rows(tiny_llama, kit, Baseline("plain"), USERS, "fear", parts, "zero")
    assert all(isinstance(edit, HeadAblation | NeuronAblation) for row in plain for edit in row.interventions)  # no steering
