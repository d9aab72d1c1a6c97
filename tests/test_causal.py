"""The causal ranking's pieces (``emo_core.causal``) on small hand-made effects: the harm bound's edge, the others' mean
with few emotions, the ranked table's columns, and a harmful part's place in a part's profile."""

from __future__ import annotations

import pytest
import torch

from emo_core.causal import HARM_BOUND, OTHERS_WEIGHT, causal_scores, harmful, others_mean, part_profile, ranking_table


def test_a_part_is_harmful_only_beyond_the_bound_either_way() -> None:
    base = 2.0
    bound = HARM_BOUND * base
    harm = torch.tensor([[0.0, bound, -bound, bound * 1.001, -bound * 1.001]], dtype=torch.float64)
    assert harmful(harm, base).tolist() == [[False, False, False, True, True]]


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_the_others_mean_is_the_mean_over_the_other_emotions(n: int) -> None:
    own = torch.randn(n, 3, 4, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    got = others_mean(own)
    assert got.shape == own.shape
    for e in range(n):
        others = [own[f] for f in range(n) if f != e]
        expected = torch.stack(others).mean(dim=0) if others else torch.zeros(3, 4, dtype=torch.float64)
        torch.testing.assert_close(got[e], expected)


def test_scores_subtract_the_others_rises_never_their_falls_and_mark_harmful_parts() -> None:
    own = torch.tensor([[[1.0, 1.0]], [[-2.0, 3.0]], [[-2.0, 1.0]]])  # [E=3, L=1, units=2]
    harm = torch.tensor([[0.0, 1.0]])
    score = causal_scores(own, harm, 1.0)
    # unit 0: the others' mean drop is -2 (they rise), so it is not held against emotion 0
    assert score[0, 0, 0].item() == pytest.approx(1.0)
    assert score[1, 0, 0].item() == pytest.approx(-2.0 - OTHERS_WEIGHT * 0.0)
    assert torch.isneginf(score[:, 0, 1]).all()  # unit 1 raises the neutral loss by far more than the bound


def test_the_ranked_table_lists_eligible_parts_by_score_then_own_and_the_excluded_last() -> None:
    own = torch.tensor([[0.5, 0.9, 0.1], [0.5, 0.2, 0.3]])
    others = torch.zeros(2, 3)
    harm = torch.tensor([[0.0, 0.0, 9.0], [0.0, 0.0, 0.0]])
    score = torch.tensor([[0.4, 0.4, -float("inf")], [0.4, 0.1, 0.3]])
    table = ranking_table(own, others, harm, score, "neuron")
    assert list(table.columns) == ["layer", "neuron", "own", "others", "harm", "score", "eligible"]
    assert list(table.index) == list(range(6))
    assert list(zip(table["layer"], table["neuron"], strict=True)) == [(0, 1), (0, 0), (1, 0), (1, 2), (1, 1), (0, 2)]
    assert table["eligible"].tolist() == [True] * 5 + [False]


def test_a_parts_profile_ranks_it_in_every_emotions_table_and_a_harmful_part_nowhere() -> None:
    own = torch.tensor([[[0.9, 0.1, 0.5]], [[0.0, 0.8, 0.4]]])  # [E=2, L=1, 3 heads]
    harm = torch.tensor([[0.0, 0.0, 5.0]])
    paper = torch.tensor([[[1.0, 3.0, 2.0]], [[3.0, 1.0, 2.0]]])
    profile = part_profile(own, harm, 1.0, paper, ("anger", "fear"), "head", 0, 1)
    assert list(profile.columns) == ["emotion", "own", "others", "score", "rank", "paper_rank"]
    assert profile["emotion"].tolist() == ["anger", "fear"]
    assert profile["own"].tolist() == pytest.approx([0.1, 0.8]) and profile["others"].tolist() == pytest.approx([0.8, 0.1])
    scores = causal_scores(own, harm, 1.0)
    assert profile["score"].tolist() == pytest.approx([float(scores[0, 0, 1]), float(scores[1, 0, 1])])
    assert profile["rank"].tolist() == [2, 1] and profile["paper_rank"].tolist() == [1, 3]
    harmful_part = part_profile(own, harm, 1.0, paper, ("anger", "fear"), "head", 0, 2)
    assert harmful_part["rank"].tolist() == [0, 0] and harmful_part["paper_rank"].tolist() == [2, 2]
