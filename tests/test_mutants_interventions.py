"""Interventions down to their edges: masks, index bounds, lowering to edits, hook arithmetic, tuple outputs, devices, dtypes
and gradients through frozen models (each test kills mutants of interventions.py that the family-wide tests let live).

A tiny Llama without a tokenizer is enough here (input ids are drawn at random), so these tests load nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

import emo_core as ec
from emo_core.arch import Adapter
from emo_core.interventions import (
    ComponentEdit,
    HeadAblation,
    NeuronAblation,
    ResidualAddition,
    _Affine,
    _Group,
    _make_capture_hook,
    _make_residual_hook,
    _retuple,
    _row_list,
    _runs,
    _Steer,
    activated,
    compile_edits,
    rms,
    untuple,
)
from tests.conftest import VOCAB, tiny_model


@pytest.fixture(scope="module")
def llama() -> SimpleNamespace:
    """A tiny float64 Llama as a bundle stand-in: interventions and captures read only ``adapter`` (and run ``model``)."""
    model = tiny_model("llama")
    adapter = Adapter(model)
    return SimpleNamespace(model=model, adapter=adapter, shape=adapter.shape)


@pytest.fixture
def ids() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randint(0, VOCAB, (3, 6))


@contextmanager
def active_token() -> Iterator[int]:
    """A hook token that is active in this thread, for calling a hook function directly."""
    tokens: list[int] = []
    with activated(lambda token: tokens.append(token) or []):
        yield tokens[0]


def test_untuple_and_retuple_keep_the_rest_of_a_tuple_output() -> None:
    # transformers 4.x layers return (hidden, ...): kills output[1], 'and False'/'or True' on the tuple test, original[2:]
    hidden, other, third = torch.ones(2), torch.zeros(2), "cache"
    assert untuple((hidden, other)) is hidden and untuple(hidden) is hidden
    with pytest.raises(ValueError, match="expected a tensor output, got str"):
        untuple(("not a tensor", hidden))
    replaced = torch.full((2,), 5.0)
    assert _retuple((hidden, other, third), replaced) == (replaced, other, third)
    assert _retuple(hidden, replaced) is replaced


def test_row_lists_count_rows_as_indexing_does_and_refuse_missing_ones() -> None:
    # kills a dropped 'None means every row', '>' for '>=', '<=' for '<', unsorted or repeated rows and the message's mutants
    assert _row_list(None, 3) == [0, 1, 2]
    assert _row_list((2, 0, 2), 3) == [0, 2]
    assert _row_list((-1, -3), 3) == [0, 2]
    assert _row_list((), 3) == []
    with pytest.raises(ec.InvalidInterventionError, match=r"^Row 3 does not exist in a batch of 3\.$"):
        _row_list((1, 3), 3)
    with pytest.raises(ec.InvalidInterventionError, match=r"^Row -4 does not exist in a batch of 3\.$"):
        _row_list((-4, 0), 3)


def test_untouched_cells_keep_their_exact_values_and_last_position_edits_touch_only_the_last() -> None:
    # row 0 channel 1 zeroed everywhere, row 1 channel 2 set to 5 at the last position: kills a scale of 0 or an add of +0.0
    # for untouched cells (-0.0 would turn +0.0), a last-position edit at every position, a decode step (one position) that
    # misses it, and a hook that edits the caller's tensor in place
    edits = [
        ComponentEdit("mlp_post", 0, (1,), scale=0.0, rows=(0,)),
        ComponentEdit("mlp_post", 0, (2,), scale=0.0, add=torch.tensor([5.0]), positions="last", rows=(1,)),
    ]
    x = torch.tensor([[[-0.0, 2.0, 3.0]] * 4, [[1.0, -0.0, -7.0]] * 4])  # [2 rows, 4 positions, 3 channels]
    given = x.clone()
    (run,) = _Group(edits, _Affine).runs(x)
    expected = x.clone()
    expected[0, :, 1] = 0.0
    expected[1, -1, 2] = 5.0
    edited = run(x)
    assert torch.equal(edited, expected) and torch.equal(edited.signbit(), expected.signbit())
    assert torch.equal(run(x[:, -1:]), expected[:, -1:])
    assert torch.equal(x, given) and torch.equal(x.signbit(), given.signbit())
    # steering row 0 only: row 1 (with its -0.0) must come back bit for bit, with no rms or vector leaking into it
    steering = (ResidualAddition({0: torch.ones(3)}, alpha=2.0, scale="unit", positions="all", rows=(0,)), torch.ones(3))
    (steer,) = _Group([steering], _Steer).runs(x)
    steered = steer(x, rms(x))
    assert torch.equal(steered[0], x[0] + 2.0) and torch.equal(steered[1], x[1]) and torch.equal(steered[1].signbit(), x[1].signbit())


def test_runs_split_where_two_edits_share_a_row_and_channel() -> None:
    # (rows, channels) per edit: the fourth shares row 0, channel 2 with the first, so it starts a second run; the fifth
    # (row 2) joins it; kills a split on a shared row or channel alone, and runs that forget what they took
    footprints = [([0], [1, 2]), ([1], [1]), ([0], [3]), ([0, 1], [2]), ([2], [2]), ([2], [2])]
    assert _runs(footprints) == [[0, 1, 2], [3, 4], [5]]
    assert _runs([]) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (HeadAblation(((0, 4),)), r"^Head 4 does not exist; layers have heads 0 to 3\.$"),
        (HeadAblation(((0, -1),)), r"^Head -1 does not exist; layers have heads 0 to 3\.$"),
        (NeuronAblation(((0, 48),)), r"^Neuron 48 does not exist; layers have neurons 0 to 47\.$"),
        (NeuronAblation(((1, -1),)), r"^Neuron -1 does not exist; layers have neurons 0 to 47\.$"),
        (NeuronAblation(((2, 1),), mode="mean"), r"^Mean ablation at layer 2 needs mean activations from the cache\.$"),
        (NeuronAblation(((2, 1),), mode="mean", means={0: torch.zeros(48)}), r"^Mean ablation at layer 2 needs mean activations"),
        (ComponentEdit("mlp_post", 0, (48,)), r"^Channel index out of range for mlp_post \(width 48\)\.$"),
        (ComponentEdit("attn_z", 0, (-1,)), r"^Channel index out of range for attn_z \(width 32\)\.$"),
        (ComponentEdit("attn_z", 0, (0, 1), add=torch.zeros(3)), r"^An edit's added values must have one entry per channel\.$"),
        (ResidualAddition({0: torch.zeros(31)}, alpha=1.0), r"^Steering vectors must have 32 entries\.$"),
    ],
)
def test_out_of_range_values_are_refused_at_the_boundary(llama: SimpleNamespace, bad: object, message: str) -> None:
    # the last valid index passes (next test) and the first invalid one is refused: kills '<=' for '<' and '0 <' for '0 <='
    with pytest.raises(ec.InvalidInterventionError, match=message):
        compile_edits(llama.adapter, bad)


def test_unknown_interventions_are_refused(llama: SimpleNamespace) -> None:
    with pytest.raises(ec.InvalidInterventionError, match=r"^Unknown intervention str\.$"):
        compile_edits(llama.adapter, "HeadAblation")


def test_mean_head_ablation_keeps_its_mode_means_and_rows(llama: SimpleNamespace) -> None:
    # kills a head ablation lowered without its mode, its means or a neuron ablation without its rows
    means = {1: torch.arange(32, dtype=torch.float64)}
    (edit,) = compile_edits(llama.adapter, HeadAblation(((1, 2),), mode="mean", means=means, rows=(0,)))
    torch.testing.assert_close(edit.add, torch.arange(16, 24, dtype=torch.float64))
    assert edit.rows == (0,) and edit.scale == 0.0
    (neuron,) = compile_edits(llama.adapter, NeuronAblation(((0, 5),), rows=(2,)))
    assert neuron.rows == (2,)


def test_ablations_lower_to_one_edit_per_layer_with_every_channel(llama: SimpleNamespace) -> None:
    # heads 0 and 3 (the ends), a negative layer, mean values per channel: kills bounds, head slices, 'add = ""', scale 1.0,
    # positions other than "all", dropped rows, unsorted layers
    heads = compile_edits(llama.adapter, HeadAblation(((2, 3), (-1, 0), (0, 1)), rows=(1,)))
    assert [(e.site, e.layer, e.channels, e.scale, e.add, e.positions, e.rows) for e in heads] == [
        ("attn_z", 0, tuple(range(8, 16)), 0.0, None, "all", (1,)),
        ("attn_z", 2, (*range(24, 32), *range(0, 8)), 0.0, None, "all", (1,)),
    ]
    means = {1: torch.arange(48, dtype=torch.float64) * 0.5}
    neurons = compile_edits(llama.adapter, NeuronAblation(((1, 47), (-2, 0)), mode="mean", means=means))
    assert [(e.site, e.layer, e.channels, e.scale, e.positions, e.rows) for e in neurons] == [("mlp_post", 1, (47, 0), 0.0, "all", None)]
    torch.testing.assert_close(neurons[0].add, torch.tensor([23.5, 0.0], dtype=torch.float64))


def test_edits_and_steering_are_lowered_with_normalized_layers(llama: SimpleNamespace) -> None:
    edit = ComponentEdit("mlp_post", -1, (0, 47), scale=2.0, add=None)
    (lowered,) = compile_edits(llama.adapter, edit)
    assert (lowered.site, lowered.layer, lowered.channels, lowered.scale, lowered.add) == ("mlp_post", 2, (0, 47), 2.0, None)
    vector = torch.ones(32)
    (steering,) = compile_edits(llama.adapter, ResidualAddition({-3: vector}, alpha=0.5, scale="unit"))
    assert list(steering.vectors) == [0] and steering.vectors[0] is vector and (steering.alpha, steering.scale) == (0.5, "unit")


def test_a_component_edit_scales_then_adds_on_its_rows_and_positions(llama: SimpleNamespace, ids: torch.Tensor) -> None:
    # kills '/' for '*', '-' for '+', a dropped mask, and rows/positions passed as None
    add = torch.tensor([1.5, -2.0], dtype=torch.float64)
    with ec.capture(llama, ["mlp_post"], [1]) as base:
        llama.model(ids)
    for positions in ("all", "last"):
        edit = ComponentEdit("mlp_post", 1, (5, 9), scale=3.0, add=add, positions=positions, rows=(0, 2))
        with ec.intervene(llama, edit), ec.capture(llama, ["mlp_post"], [1]) as edited:
            llama.model(ids)
        expected = base[("mlp_post", 1)].clone()
        where = slice(None) if positions == "all" else slice(-1, None)
        for row in (0, 2):
            expected[row, where][:, [5, 9]] = expected[row, where][:, [5, 9]] * 3.0 + add
        torch.testing.assert_close(edited[("mlp_post", 1)], expected, rtol=0, atol=1e-12)


def test_rms_is_the_root_mean_square_over_the_hidden_axis() -> None:
    # kills pow(3), mean over another or every axis, keepdim off, and an epsilon of 1
    h = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]]], dtype=torch.float64)  # [1, 3, 2]
    size = rms(h)
    assert size.shape == (1, 3, 1)
    torch.testing.assert_close(size[0, :, 0], torch.tensor([12.5**0.5, 1e-6, 1.0], dtype=torch.float64), rtol=0, atol=1e-9)


def test_unit_scale_steering_adds_alpha_v_at_every_position_of_its_rows(llama: SimpleNamespace, ids: torch.Tensor) -> None:
    # kills 'or True' / '!=' / mutated names on the scale test and ones_like(h[..., :2])
    torch.manual_seed(4)
    v = torch.randn(32, dtype=torch.float64)
    with ec.capture(llama, ["resid_post"], [0]) as base:
        llama.model(ids)
    with ec.intervene(llama, ResidualAddition({0: v}, alpha=-0.5, scale="unit", positions="all", rows=(1,))):
        with ec.capture(llama, ["resid_post"], [0]) as steered:
            llama.model(ids)
    expected = base[("resid_post", 0)].clone()
    expected[1] += -0.5 * v
    torch.testing.assert_close(steered[("resid_post", 0)], expected, rtol=0, atol=1e-12)


def test_steering_a_tuple_output_keeps_the_rest_of_the_tuple() -> None:
    # the steering hook on a layer that returns (hidden, cache) as in transformers 4.x: kills _retuple(None, ...)
    h = torch.ones(1, 2, 4)
    addition = ResidualAddition({0: torch.ones(4)}, alpha=2.0, scale="unit", positions="all")
    with active_token() as token:
        group = _Group([(addition, torch.ones(4))], _Steer)
        out = _make_residual_hook(group, token)(None, (h,), (h, "cache"))
    assert isinstance(out, tuple) and out[1] == "cache"
    torch.testing.assert_close(out[0], h + 2.0)


def test_capture_reads_hidden_states_given_by_keyword() -> None:
    # a caller may pass the layer input as hidden_states=...: kills 'args and False', 'or True' and the mutated key
    store: dict = {("resid_pre", 0): []}
    h = torch.arange(6.0).view(1, 2, 3)
    with active_token() as token:
        hook = _make_capture_hook(store, ("resid_pre", 0), None, token, "pre", False)
        assert hook(None, (), {"hidden_states": h}) is None
    assert torch.equal(store[("resid_pre", 0)][0], h)


def test_a_grad_capture_by_keyword_passes_the_tracked_tensor_on() -> None:
    store: dict = {("resid_pre", 0): []}
    h = torch.arange(6.0).view(1, 2, 3)
    with torch.enable_grad(), active_token() as token:
        args, kwargs = _make_capture_hook(store, ("resid_pre", 0), None, token, "pre", True)(None, (), {"hidden_states": h, "mask": 1})
    assert args == () and kwargs["mask"] == 1 and kwargs["hidden_states"] is store[("resid_pre", 0)][0]
    assert kwargs["hidden_states"].requires_grad and torch.equal(kwargs["hidden_states"], h)


def test_interventions_run_on_the_models_device(llama: SimpleNamespace, ids: torch.Tensor) -> None:
    """The meta device stands in for a GPU: masks and added values must be made on the input's device, not the CPU.

    Kills ``device=None`` in the mask and ``.to(dtype=...)`` without the device for edit values and steering vectors.
    """
    model = tiny_model("llama").to("meta")
    bundle = SimpleNamespace(model=model, adapter=Adapter(model))
    edits = (
        HeadAblation(((0, 1),)),
        ComponentEdit("mlp_post", 1, (2,), scale=1.0, add=torch.ones(1), rows=(0,)),
        ResidualAddition({2: torch.ones(32)}, alpha=1.0),
    )
    for edit in edits:
        with ec.intervene(bundle, edit):
            logits = model(ids.to("meta")).logits
        assert logits.device.type == "meta"


def test_captures_are_at_least_float32_on_the_cpu(ids: torch.Tensor) -> None:
    # a bfloat16 model's activations come back as float32: kills .to("cpu", None)
    model = tiny_model("llama").to(torch.bfloat16)
    bundle = SimpleNamespace(model=model, adapter=Adapter(model))
    with torch.inference_mode(), ec.capture(bundle, ["resid_post", "attn_z"], [1]) as captured:
        model(ids)
    assert {value.dtype for value in captured.values()} == {torch.float32}
    assert {value.device.type for value in captured.values()} == {"cpu"}


@pytest.mark.parametrize("sites", [("resid_pre", "attn_z", "resid_post"), ("resid_post",)])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_grad_capture_works_on_a_frozen_model(family: str, sites: tuple[str, ...], ids: torch.Tensor) -> None:
    """A frozen model's first captured sites do not track gradients; the capture must start the graph there.

    Gradients through the capture equal those of a model whose weights track gradients (kills the mutants of ``_in_graph``
    and of the hooks' 'fresh' branches, which leave a frozen model's gradient unset or cut the graph between two sites).
    With ``resid_post`` alone, a layer output is the first site, which exercises the forward hook's own 'fresh' branch.
    """
    gradients = []
    for frozen in (False, True):
        model = tiny_model(family).float()
        model.requires_grad_(not frozen)
        bundle = SimpleNamespace(model=model, adapter=Adapter(model))
        with torch.enable_grad(), ec.capture(bundle, list(sites), [0, 1], grad=True) as captured:
            metric = model(ids).logits[:, -1].sum()
        keys = sorted(captured.parts)
        grads = torch.autograd.grad(metric, [part for key in keys for part in captured.parts[key]])
        assert all(grad is not None and grad.abs().sum() > 0 for grad in grads)
        gradients.append(grads)
    for with_weights, frozen in zip(*gradients, strict=True):
        torch.testing.assert_close(frozen, with_weights, rtol=1e-5, atol=1e-6)


def test_steering_keeps_the_models_dtype(ids: torch.Tensor) -> None:
    # a float64 vector on a float32 model: kills .to(device) without the dtype, which would turn the residual into float64
    model = tiny_model("llama").float()
    bundle = SimpleNamespace(model=model, adapter=Adapter(model))
    with ec.intervene(bundle, ResidualAddition({0: torch.ones(32, dtype=torch.float64)}, alpha=0.5)):
        with ec.capture(bundle, ["resid_post"], [0]) as captured:
            logits = model(ids).logits
    assert logits.dtype == torch.float32 and captured[("resid_post", 0)].dtype == torch.float32
