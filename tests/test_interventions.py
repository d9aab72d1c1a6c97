"""Exactness of interventions and captures, for every family, on tiny models."""

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import pytest
import torch

import emo_core as ec
from emo_core.arch import out_weight
from emo_core.interventions import ComponentEdit, Intervention, ResidualAddition, on_rows, rms
from tests.conftest import exact


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _record_output(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_hook(lambda mod, args, out: store.append(out.detach().clone()))


def test_zeroing_a_head_removes_exactly_its_projected_contribution(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    layer, head = 1, 2
    base_out, ablated_out = [], []
    handle = _record_output(tiny.adapter.attn_out(layer), base_out)
    with ec.capture(tiny, ["attn_z"], [layer]) as captured:
        tiny.model(input_ids)
    handle.remove()
    handle = _record_output(tiny.adapter.attn_out(layer), ablated_out)
    with ec.intervene(tiny, ec.HeadAblation(((layer, head),))):
        tiny.model(input_ids)
    handle.remove()
    d = tiny.shape.head_dim
    z_head = captured[("attn_z", layer)][..., head * d : (head + 1) * d]
    contribution = z_head @ tiny.adapter.head_out_weight(layer, head).detach().T
    torch.testing.assert_close(ablated_out[0] - base_out[0], -contribution, rtol=0, atol=exact(tiny))


def test_zeroing_every_neuron_removes_the_mlp_output(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    layer = 1
    all_neurons = tuple((layer, j) for j in range(tiny.shape.d_mlp))
    with ec.intervene(tiny, ec.NeuronAblation(all_neurons)), ec.capture(tiny, ["resid_mid", "resid_post"], [layer]) as c:
        tiny.model(input_ids)
    bias = tiny.adapter.mlp_out(layer).bias
    expected = c[("resid_mid", layer)] + (bias.detach() if bias is not None else 0)
    torch.testing.assert_close(c[("resid_post", layer)], expected, rtol=0, atol=exact(tiny))


def test_captured_residuals_equal_output_hidden_states(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    with ec.capture(tiny, ["resid_pre", "resid_post"]) as captured:
        hidden = tiny.model(input_ids, output_hidden_states=True).hidden_states
    n = tiny.shape.n_layers
    for layer in range(n):
        assert torch.equal(captured[("resid_pre", layer)], hidden[layer])
    for layer in range(n - 1):
        assert torch.equal(captured[("resid_post", layer)], hidden[layer + 1])
    torch.testing.assert_close(tiny.adapter.final_norm()(captured[("resid_post", n - 1)]), hidden[n])


def test_last_position_capture_reads_each_rows_token(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    positions = torch.tensor([6, 3])
    with ec.capture(tiny, ["resid_mid"], [0]) as every, ec.capture(tiny, ["resid_mid"], [0], positions=positions) as last:
        tiny.model(input_ids)
    assert torch.equal(last[("resid_mid", 0)], every[("resid_mid", 0)][torch.arange(2), positions])


def test_neuron_contributions_sum_to_the_mlp_output_projection(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    layer, outputs = 2, []
    handle = _record_output(tiny.adapter.mlp_out(layer), outputs)
    with ec.capture(tiny, ["mlp_post"], [layer]) as captured:
        tiny.model(input_ids)
    handle.remove()
    torch.manual_seed(3)
    v = torch.randn(tiny.shape.d_model, dtype=tiny.dtype)
    v /= v.norm()
    w_down = tiny.adapter.neuron_out_weight(layer).detach()  # [d_model, d_mlp]
    contributions = captured[("mlp_post", layer)] * (w_down.T @ v)  # [batch, pos, d_mlp]
    bias = tiny.adapter.mlp_out(layer).bias
    mlp_out = outputs[0] - (bias.detach() if bias is not None else 0)
    torch.testing.assert_close(contributions.sum(-1), mlp_out @ v, rtol=0, atol=exact(tiny))


def test_hooks_are_removed_on_exit_and_on_error(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    before = _hook_count(tiny.model)
    steer = ResidualAddition({1: torch.ones(tiny.shape.d_model)}, alpha=1.0)
    with ec.intervene(tiny, ec.HeadAblation(((0, 1),)), ec.NeuronAblation(((2, 5),)), steer), ec.capture(tiny, ["resid_pre", "attn_z"]):
        assert _hook_count(tiny.model) > before
        tiny.model(input_ids)
    assert _hook_count(tiny.model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with ec.intervene(tiny, ec.HeadAblation(((0, 1),))), ec.capture(tiny, ["resid_mid"]):
            raise RuntimeError("boom")
    assert _hook_count(tiny.model) == before


def test_zero_strength_steering_is_the_identity(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    base = tiny.model(input_ids).logits
    with ec.intervene(tiny, ResidualAddition({0: torch.randn(tiny.shape.d_model)}, alpha=0.0, positions="all")):
        steered = tiny.model(input_ids).logits
    assert torch.equal(base, steered)


def test_rms_steering_adds_alpha_rms_v_to_the_layer_output(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    v = torch.randn(tiny.shape.d_model, dtype=tiny.dtype)
    with ec.capture(tiny, ["resid_post"], [1]) as base:
        tiny.model(input_ids)
    with (
        ec.intervene(tiny, ResidualAddition({1: v}, alpha=0.5, positions="last", rows=(1,))),
        ec.capture(tiny, ["resid_post"], [1]) as steered,
    ):
        tiny.model(input_ids)
    h = base[("resid_post", 1)]
    expected = h.clone()
    expected[1, -1] += 0.5 * h[1, -1].pow(2).mean().add(1e-12).sqrt() * v
    torch.testing.assert_close(steered[("resid_post", 1)], expected, rtol=1e-6, atol=1e-6)


def test_mean_ablation_fills_the_given_means(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    means = {0: torch.arange(tiny.shape.d_mlp, dtype=tiny.dtype)}
    with ec.intervene(tiny, ec.NeuronAblation(((0, 3), (0, 7)), mode="mean", means=means)), ec.capture(tiny, ["mlp_post"], [0]) as c:
        tiny.model(input_ids)
    z = c[("mlp_post", 0)]
    assert torch.all(z[..., 3] == 3) and torch.all(z[..., 7] == 7)


def test_row_targeting_leaves_other_rows_untouched(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    same = input_ids[:1].repeat(2, 1)
    base = tiny.model(same[:1]).logits
    ablation = ec.HeadAblation(((0, 0), (2, 3)), rows=(1,))
    with ec.intervene(tiny, ablation):
        both = tiny.model(same).logits
    with ec.intervene(tiny, ec.HeadAblation(((0, 0), (2, 3)))):
        alone = tiny.model(same[:1]).logits
    torch.testing.assert_close(both[0], base[0], rtol=0, atol=exact(tiny))
    torch.testing.assert_close(both[1], alone[0], rtol=0, atol=exact(tiny))


@pytest.mark.parametrize(
    "bad, message",
    [
        (ec.HeadAblation(((0, 99),)), "Head 99 does not exist"),
        (ec.NeuronAblation(((0, 10_000),)), "Neuron 10000 does not exist"),
        (ec.HeadAblation(((7, 0),)), "Layer 7 does not exist"),
        (ec.NeuronAblation(((0, 1),), mode="mean"), "needs mean activations"),
    ],
)
def test_bad_indices_give_a_clear_message(tiny: ec.ModelBundle, bad: ec.HeadAblation, message: str) -> None:
    before = _hook_count(tiny.model)
    with pytest.raises(ec.InvalidInterventionError, match=message):
        with ec.intervene(tiny, bad):
            pass
    assert _hook_count(tiny.model) == before


@pytest.mark.parametrize("site", ["attn_z", "mlp_post"])
def test_a_component_edit_scales_then_adds(tiny: ec.ModelBundle, input_ids: torch.Tensor, site: str) -> None:
    """``x <- x * scale + add`` on the chosen channels, row and position only; the add path runs with non-zero values."""
    channels, scale, add = (0, 2, 5), 0.5, torch.tensor([0.75, -1.25, 2.0], dtype=tiny.dtype)
    with ec.capture(tiny, [site], [1]) as base:
        tiny.model(input_ids)
    edit = ComponentEdit(site, 1, channels, scale=scale, add=add, positions="last", rows=(1,))
    with ec.intervene(tiny, edit), ec.capture(tiny, [site], [1]) as edited:
        tiny.model(input_ids)
    x = base[(site, 1)]
    expected = x.clone()
    expected[1, -1, list(channels)] = x[1, -1, list(channels)] * scale + add
    torch.testing.assert_close(edited[(site, 1)], expected, rtol=0, atol=exact(tiny))


def _own_edits(tiny: ec.ModelBundle, row: int) -> list[Intervention]:
    """Edits of every kind that differ from row to row (steering at every position or the last, head and mean neuron ablation)."""
    generator = torch.Generator().manual_seed(row)
    means = {0: torch.randn(tiny.shape.d_mlp, generator=generator, dtype=tiny.dtype)}
    return [
        ResidualAddition(
            {1: torch.randn(tiny.shape.d_model, generator=generator, dtype=tiny.dtype)}, 0.5 + row, positions=("all", "last")[row % 2]
        ),
        ec.HeadAblation(((1, row),)),
        ec.NeuronAblation(((0, row), (0, row + 5)), mode="mean", means=means),
        ComponentEdit("mlp_post", 2, (row, 7), scale=1.5, add=torch.randn(2, generator=generator, dtype=tiny.dtype), positions="last"),
    ]


def test_a_batch_of_rows_with_their_own_edits_equals_each_row_alone(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    """Each row's edits on that row only, after a shared one, as ``forced_pass`` and ``generate_rows`` batch them.

    The hooks apply a site's edits all at once; that must equal one hook per edit applied in turn, exactly (the shared
    ablation and each row's edit of neuron 7 at layer 2 overlap, so they must also keep their order), and each row run alone.
    """
    ids = torch.cat([input_ids, input_ids[:1]])
    shared = [ec.NeuronAblation(((2, 7), (2, 1)))]
    edits = [*shared, *(on_rows(edit, (i,)) for i in range(len(ids)) for edit in _own_edits(tiny, i))]
    with ec.intervene(tiny, *edits):
        together = tiny.model(ids).logits
    with ExitStack() as stack:
        for edit in edits:
            stack.enter_context(ec.intervene(tiny, edit))
        in_turn = tiny.model(ids).logits
    assert torch.equal(together, in_turn)
    for i in range(len(ids)):
        with ec.intervene(tiny, *shared, *_own_edits(tiny, i)):
            alone = tiny.model(ids[i : i + 1]).logits
        torch.testing.assert_close(together[i], alone[0], rtol=0, atol=exact(tiny))
    assert not torch.equal(together[0], together[2])


@pytest.mark.parametrize("site", ["attn_z", "mlp_post"])
def test_edits_of_one_row_and_channel_apply_in_their_order(tiny: ec.ModelBundle, input_ids: torch.Tensor, site: str) -> None:
    """Channel 2 of row 1 is edited by both edits: scaled and shifted by the first, then by the second at the last position."""
    first = ComponentEdit(site, 1, (0, 2), scale=2.0, add=torch.tensor([1.0, -1.0], dtype=tiny.dtype), rows=(1,))
    second = ComponentEdit(site, 1, (2, 3), scale=0.5, add=torch.tensor([0.25, 4.0], dtype=tiny.dtype), positions="last")
    with ec.capture(tiny, [site], [1]) as base:
        tiny.model(input_ids)
    with ec.intervene(tiny, first, second), ec.capture(tiny, [site], [1]) as edited:
        tiny.model(input_ids)
    with ec.intervene(tiny, second, first), ec.capture(tiny, [site], [1]) as swapped:
        tiny.model(input_ids)
    x = base[(site, 1)]
    expected = x.clone()
    expected[1, :, [0, 2]] = x[1, :, [0, 2]] * 2.0 + first.add
    expected[:, -1, [2, 3]] = expected[:, -1, [2, 3]] * 0.5 + second.add
    assert torch.equal(edited[(site, 1)], expected)
    assert not torch.equal(swapped[(site, 1)][1, -1, 2], expected[1, -1, 2])


def test_additions_to_one_row_add_up_in_order_each_sized_by_the_layers_own_output(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    v, w = torch.linspace(-1, 1, tiny.shape.d_model, dtype=tiny.dtype), torch.linspace(2, 0, tiny.shape.d_model, dtype=tiny.dtype)
    first = ResidualAddition({0: v}, alpha=0.75, positions="all", rows=(1,))
    second = ResidualAddition({0: w}, alpha=-1.5, positions="all")
    with ec.capture(tiny, ["resid_post"], [0]) as base:
        tiny.model(input_ids)
    with ec.intervene(tiny, first, second), ec.capture(tiny, ["resid_post"], [0]) as steered:
        tiny.model(input_ids)
    h = base[("resid_post", 0)]
    size = rms(h)
    expected = h.clone()
    expected[1] = h[1] + 0.75 * size[1] * v
    expected = expected + -1.5 * size * w
    assert torch.equal(steered[("resid_post", 0)], expected)


def _hold_in_thread(enter: Callable[[], AbstractContextManager], inside: Callable[[], None]) -> None:
    """Enter ``enter()`` in a worker thread, run ``inside()`` here while it is active, then let the worker leave.

    Events order the two threads, so nothing depends on timing."""
    entered, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with enter():
                entered.set()
                release.wait(timeout=30)
        except BaseException as error:  # surfaced in the calling thread
            failure.append(error)
            entered.set()

    worker = threading.Thread(target=hold)
    worker.start()
    assert entered.wait(timeout=30)
    try:
        inside()
    finally:
        release.set()
        worker.join()
    assert not failure, failure


def test_a_capture_records_only_its_own_threads_passes(tiny: ec.ModelBundle, input_ids: torch.Tensor) -> None:
    sites = ["resid_pre", "resid_mid", "resid_post", "attn_z", "mlp_post"]  # forward hooks and pre-hooks
    holder: dict = {}

    @contextmanager
    def held_capture() -> Iterator[None]:
        with ec.capture(tiny, sites) as captured:
            holder["captured"] = captured
            yield

    _hold_in_thread(held_capture, lambda: tiny.model(input_ids))
    assert dict(holder["captured"]) == {}
    with ec.capture(tiny, sites) as own:
        tiny.model(input_ids)
    assert len(own) == len(sites) * tiny.shape.n_layers  # the same capture does record its own thread's pass


INTERVENTIONS_ACROSS_THREADS: dict[str, Callable[[ec.ModelBundle], Intervention]] = {
    "head ablation": lambda b: ec.HeadAblation(tuple((layer, h) for layer in range(b.shape.n_layers) for h in range(b.shape.n_heads))),
    "neuron ablation": lambda b: ec.NeuronAblation(tuple((1, j) for j in range(b.shape.d_mlp))),
    "steering": lambda b: ResidualAddition({layer: torch.ones(b.shape.d_model) for layer in range(b.shape.n_layers)}, alpha=2.0),
    "component edit": lambda b: ComponentEdit("mlp_post", 1, (0, 1, 2), scale=2.0, add=torch.ones(3)),
}


@pytest.mark.parametrize("kind", sorted(INTERVENTIONS_ACROSS_THREADS))
def test_an_intervention_is_invisible_to_a_pass_in_another_thread(tiny: ec.ModelBundle, input_ids: torch.Tensor, kind: str) -> None:
    """Active here, a forward pass in another thread (another session) sees the plain model; the reverse order too."""
    baseline = tiny.model(input_ids).logits
    intervention = INTERVENTIONS_ACROSS_THREADS[kind](tiny)
    seen: dict[str, torch.Tensor] = {}
    with ec.intervene(tiny, intervention):
        worker = threading.Thread(target=lambda: seen.update(other=tiny.model(input_ids).logits))
        worker.start()
        worker.join()
        own = tiny.model(input_ids).logits
    assert not torch.equal(own, baseline)  # it does act in its own thread
    assert torch.equal(seen["other"], baseline)
    _hold_in_thread(lambda: ec.intervene(tiny, intervention), lambda: seen.update(here=tiny.model(input_ids).logits))
    assert torch.equal(seen["here"], baseline)


def test_out_weight_orients_conv1d_like_linear(tiny: ec.ModelBundle) -> None:
    module = tiny.adapter.mlp_out(0)
    x = torch.randn(tiny.shape.d_mlp, dtype=tiny.dtype)
    bias = module.bias if module.bias is not None else 0
    torch.testing.assert_close(module(x[None])[0] - bias, out_weight(module) @ x)
