"""Parts (``emo_core.parts``): naming, parsing, range checks, the one top-k, the matched control, the one knockout builder
and the CLI's part specs, each checked against what it promises rather than against its current output."""

from __future__ import annotations

import random

import pytest
import torch

from emo_core.circuit import Circuit
from emo_core.errors import LimitError
from emo_core.interventions import HeadAblation, NeuronAblation
from emo_core.parts import (
    MAX_PARTS,
    SPEC_FORMS,
    Component,
    NeutralMeans,
    Ranked,
    circuit_components,
    count,
    describe,
    from_pairs,
    knockout,
    matched_random,
    out_of_range,
    parse_spec,
    parse_token,
    parse_tokens,
    resolve,
    top_indices,
    top_parts,
)

H, N = "head", "neuron"


def test_a_component_names_itself_as_a_token_and_in_words() -> None:
    assert Component(H, 12, 3).token == "L12H3" and Component(N, 0, 1234).token == "L0N1234"
    assert Component(H, 12, 3).label == "head 3 of layer 12" and Component(N, 7, 0).label == "neuron 0 of layer 7"
    assert sorted([Component(N, 1, 0), Component(H, 2, 0), Component(H, 1, 5)]) == [
        Component(H, 1, 5),
        Component(H, 2, 0),
        Component(N, 1, 0),
    ]


def test_count_is_plural_except_for_one() -> None:
    assert [count(n, "head") for n in (0, 1, 2, 1234)] == ["0 heads", "1 head", "2 heads", "1,234 heads"]


@pytest.mark.parametrize("part", [Component(H, 0, 0), Component(H, 29, 8), Component(N, 12, 1535), Component(N, 123456789, 987654321)])
def test_every_token_parses_back_to_its_part(part: Component) -> None:
    assert parse_token(part.token) == part
    assert parse_token(f"  {part.token.lower()} ") == part  # any case, spaces around


@pytest.mark.parametrize("text", ["", "L12", "L12X3", "12H3", "LH3", "L1H", "L1.5H3", "L-1H3", "L1H3x", "L1234567890H1", "L²H3"])
def test_text_that_names_no_part_is_refused_with_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is not a component; write L<layer>H<head> or L<layer>N<neuron>, e.g. L12H3"):
        parse_token(text)


def test_a_refused_token_is_quoted_cut_to_forty_characters() -> None:
    with pytest.raises(ValueError) as refused:
        parse_token("X" * 100)
    assert str(refused.value).startswith(f"'{'X' * 40}' is not")


def test_token_lists_keep_order_drop_repeats_and_return_what_did_not_parse() -> None:
    parts, bad = parse_tokens(["L3H1, L1N7,,L3H1", " l1n7 ", "nope", "L2H0,L9", ""])
    assert parts == [Component(H, 3, 1), Component(N, 1, 7), Component(H, 2, 0)]
    assert bad == ["nope", "L9"]
    assert parse_tokens([]) == ([], [])


@pytest.mark.parametrize(
    ("part", "problem"),
    [
        (Component(H, 0, 0), None),
        (Component(H, 3, 3), None),
        (Component(N, 3, 9), None),
        (Component(H, 4, 0), "L4H0: layer 4 does not exist (layers 0 to 3)."),
        (Component(H, -1, 0), "L-1H0: layer -1 does not exist (layers 0 to 3)."),
        (Component(H, 2, 4), "L2H4: head 4 does not exist (0 to 3 per layer)."),
        (Component(H, 2, -1), "L2H-1: head -1 does not exist (0 to 3 per layer)."),
        (Component(N, 2, 10), "L2N10: neuron 10 does not exist (0 to 9 per layer)."),
        (Component(N, 0, 4), None),  # a neuron's width is d_mlp, not the head count
    ],
)
def test_out_of_range_names_what_the_model_lacks(part: Component, problem: str | None) -> None:
    assert out_of_range(part, n_layers=4, n_heads=4, d_mlp=10) == problem


def test_parts_from_pairs_and_from_a_circuit() -> None:
    assert from_pairs([(1, 2), (torch.tensor(3), 4.0)], N) == [Component(N, 1, 2), Component(N, 3, 4)]
    assert all(type(c.layer) is int and type(c.index) is int for c in from_pairs([(torch.tensor(3), 4.0)], H))
    circuit = Circuit("fear", heads=((5, 1, 0.9), (2, 0, 0.5)), neurons=((7, 100, 0.3),), weights={})
    assert circuit_components(circuit) == [Component(H, 5, 1), Component(H, 2, 0), Component(N, 7, 100)]


def test_describe_counts_each_kind_and_spans_the_layers() -> None:
    assert describe([]) == "nothing"
    assert describe([Component(H, 4, 1)]) == "1 head in layer 4"
    assert describe([Component(N, 4, 1), Component(N, 4, 2)]) == "2 neurons in layer 4"
    assert describe([Component(H, 20, 3), Component(N, 15, 1), Component(H, 26, 0)]) == "2 heads and 1 neuron in layers 15–26"


def _grid() -> torch.Tensor:
    return torch.tensor([[0.5, 2.0, -float("inf")], [2.0, 1.0, 0.5], [-1.0, 3.0, 0.5]])


def test_top_indices_are_the_best_first_with_ties_in_grid_order_and_never_excluded() -> None:
    values, layers, index = top_indices(_grid())
    assert values.tolist() == [3.0, 2.0, 2.0, 1.0, 0.5, 0.5, 0.5, -1.0]
    assert list(zip(layers.tolist(), index.tolist(), strict=True)) == [(2, 1), (0, 1), (1, 0), (1, 1), (0, 0), (1, 2), (2, 2), (2, 0)]
    for k in (0, 1, 3, 8, 9, 100):
        v, lay, i = top_indices(_grid(), k)
        assert v.tolist() == values[: min(k, 8)].tolist() and lay.tolist() == layers[: min(k, 8)].tolist()
        assert i.tolist() == index[: min(k, 8)].tolist()


def test_top_indices_per_layer_take_each_layers_best_in_layer_order() -> None:
    values, layers, index = top_indices(_grid(), 2, per_layer=True)
    assert list(zip(layers.tolist(), index.tolist(), values.tolist(), strict=True)) == [
        (0, 1, 2.0),
        (0, 0, 0.5),
        (1, 0, 2.0),
        (1, 1, 1.0),
        (2, 1, 3.0),
        (2, 2, 0.5),
    ]
    values, layers, index = top_indices(_grid(), None, per_layer=True)
    assert len(values) == 8 and values.isfinite().all()  # every entry but the excluded one
    assert top_indices(_grid(), 10, per_layer=True)[0].tolist() == values.tolist()


def test_top_parts_pair_each_part_with_its_score() -> None:
    assert top_parts(_grid(), N, 3) == [(Component(N, 2, 1), 3.0), (Component(N, 0, 1), 2.0), (Component(N, 1, 0), 2.0)]
    assert len(top_parts(_grid(), H)) == 8


SHAPE = {"n_layers": 6, "n_heads": 4, "d_mlp": 9}


@pytest.mark.parametrize("seed", range(5))
def test_a_matched_random_set_has_as_many_parts_per_layer_and_kind_and_none_of_the_chosen(seed: int) -> None:
    chosen = [Component(H, 1, 0), Component(H, 1, 3), Component(N, 1, 4), Component(N, 5, 0), Component(N, 5, 8), Component(N, 5, 2)]
    drawn = matched_random(chosen, SHAPE, random.Random(seed))
    assert not set(drawn) & set(chosen) and len(set(drawn)) == len(drawn)
    for kind in (H, N):
        for layer in range(SHAPE["n_layers"]):
            assert sum(c.kind == kind and c.layer == layer for c in drawn) == sum(c.kind == kind and c.layer == layer for c in chosen)
    assert all(0 <= c.index < (SHAPE["n_heads"] if c.kind == H else SHAPE["d_mlp"]) for c in drawn)
    assert drawn == matched_random(chosen, SHAPE, random.Random(seed))  # the seed decides the draw


def test_matched_random_sets_vary_with_the_seed_and_stop_at_what_a_layer_has_left() -> None:
    chosen = [Component(N, 2, i) for i in range(3)]
    assert len({tuple(matched_random(chosen, SHAPE, random.Random(seed))) for seed in range(20)}) > 5
    every_head = [Component(H, 0, i) for i in range(3)]  # 3 of the layer's 4 heads: only one is left to draw
    assert matched_random(every_head, SHAPE, random.Random(0)) == [Component(H, 0, 3)]
    assert matched_random([], SHAPE, random.Random(0)) == []


MEANS = NeutralMeans(heads=torch.arange(12.0).reshape(3, 4), neurons=torch.arange(15.0).reshape(3, 5))


def test_knockout_switches_heads_then_neurons_off_in_the_order_given() -> None:
    parts = [Component(N, 2, 4), Component(H, 1, 1), Component(N, 0, 3), Component(H, 0, 2)]
    heads, neurons = knockout(parts, "zero", rows=(1, 3))
    assert isinstance(heads, HeadAblation) and isinstance(neurons, NeuronAblation)
    assert (heads.heads, heads.mode, heads.means, heads.rows) == (((1, 1), (0, 2)), "zero", None, (1, 3))
    assert (neurons.neurons, neurons.mode, neurons.means, neurons.rows) == (((2, 4), (0, 3)), "zero", None, (1, 3))
    assert [type(edit) for edit in knockout(parts[:1])] == [NeuronAblation] and knockout([]) == []
    assert [type(edit) for edit in knockout(parts[1:2])] == [HeadAblation]
    assert knockout(parts[1:2])[0].rows is None


def test_mean_knockout_carries_each_layers_means_and_needs_them() -> None:
    heads, neurons = knockout([Component(H, 1, 1), Component(N, 2, 0)], "mean", MEANS)
    assert heads.mode == neurons.mode == "mean"
    assert sorted(heads.means) == [0, 1, 2] and all(torch.equal(heads.means[i], MEANS.heads[i]) for i in range(3))
    assert sorted(neurons.means) == [0, 1, 2] and all(torch.equal(neurons.means[i], MEANS.neurons[i]) for i in range(3))
    assert MEANS.of(H) is MEANS.heads and MEANS.of(N) is MEANS.neurons
    with pytest.raises(ValueError, match="Mean ablation needs the parts' mean outputs"):
        knockout([Component(H, 1, 1)], "mean")


def test_knockout_refuses_more_than_the_limit_and_takes_the_limit() -> None:
    parts = [Component(N, layer, i) for layer in range(2) for i in range(MAX_PARTS // 2)]
    assert len(knockout(parts)) == 1
    with pytest.raises(LimitError, match=f"{MAX_PARTS + 1:,} parts cannot be switched off at once; the limit is {MAX_PARTS}"):
        knockout([*parts, Component(H, 0, 0)])


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("circuit", Ranked("circuit")),
        (" Circuit ", Ranked("circuit")),
        ("causal-heads:4", Ranked("causal", "head", 4)),
        ("CAUSAL-NEURONS:16", Ranked("causal", "neuron", 16)),
        ("causal-neurons:9999", Ranked("causal", "neuron", 9999)),
        ("L12H3", Component(H, 12, 3)),
        (" l10n123 ", Component(N, 10, 123)),
    ],
)
def test_cli_specs_name_parts_or_rankings(spec: str, parsed: object) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["causal-heads:", "causal-heads:x", "causal-head:4", "causal-heads:12345", "circuits", "L12", ""])
def test_an_unreadable_spec_is_refused_with_every_form(spec: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_spec(spec)
    assert str(refused.value) == f"Cannot read the parts '{spec.strip()[:40]}'; use {SPEC_FORMS}."


def test_a_ranking_of_no_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="'causal-heads:0' names no parts; K must be at least 1."):
        parse_spec("causal-heads:0")


def test_resolve_looks_up_rankings_and_keeps_order_without_repeats() -> None:
    asked: list[Ranked] = []

    def ranked(spec: Ranked) -> list[Component]:
        asked.append(spec)
        return [Component(spec.kind, 9, i) for i in range(spec.k)] if spec.ranking == "causal" else [Component(H, 1, 1), Component(N, 2, 2)]

    specs = [Component(H, 1, 1), Ranked("causal", N, 2), Ranked("circuit"), Component(N, 9, 0), Component(H, 0, 0)]
    assert resolve(specs, ranked) == [Component(H, 1, 1), Component(N, 9, 0), Component(N, 9, 1), Component(N, 2, 2), Component(H, 0, 0)]
    assert asked == [Ranked("causal", N, 2), Ranked("circuit")]
    assert resolve([], ranked) == []


def test_edges_of_the_cli_specs_and_the_knockout_builder() -> None:
    assert parse_spec("causal-neurons:1") == Ranked("causal", N, 1)
    with pytest.raises(ValueError) as refused:
        parse_spec("x" * 60)
    assert str(refused.value) == f"Cannot read the parts '{'x' * 40}'; use {SPEC_FORMS}."
    (edit,) = knockout([Component(H, 0, 1)])
    assert edit.mode == "zero" and edit.means is None  # zero ablation unless asked
    with pytest.raises(ValueError) as refused:
        knockout([Component(H, 0, 1)], "mean")
    assert str(refused.value) == "Mean ablation needs the parts' mean outputs over emotion-free prompts (the cache's means)."


def test_per_layer_ties_keep_the_lower_index_first() -> None:
    tied = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.5] * 4])  # 20 heads, ties everywhere (a sort that is not stable reorders them)
    values, layers, index = top_indices(tied, 6, per_layer=True)
    assert index.tolist() == [1, 2, 3, 6, 7, 8] and layers.tolist() == [0] * 6 and values.tolist() == [2.0] * 6
