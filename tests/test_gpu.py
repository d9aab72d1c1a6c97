"""The same results on a CUDA GPU as on the CPU, for every supported family, in float32 and bfloat16.

Each tiny random model of ``tests/conftest.py`` is built once on the CPU and copied, weights and all, to the GPU; each
check runs the same call on both and compares: every intervention kind on a forward pass (``intervene`` and
``capture``), greedy generation with and without interventions, replay from the lowest changed layer (plain and
teacher-forced), and attribution patching. The models share the embedded tokenizer.

How results are compared, and why:

* float32: the GPU's result is within ``FLOAT32_TOL`` (1e-4) of the CPU's, relative to the result's largest entry. On
  these models float32 differs from float64 by at most 1e-5 of that scale, so two devices' float32 kernels agree well
  inside 1e-4, and every edit used moves the result by far more. Matmuls run in full float32 (no TF32).
* bfloat16: the tiny models (``initializer_range`` 0.4) amplify rounding: on the CPU, bfloat16 differs from float64 by
  up to 25% of the logits' scale on some families and 2% on others, and two devices' bfloat16 kernels round differently,
  so a fixed tolerance would be either too loose for some families or too tight for others. The check is instead that
  the GPU is as accurate as the CPU: its result is
  no further from the exact one (the same bfloat16 weights run in float64; float32 for Gemma2, whose eager attention
  turns padded rows into NaN in float64) than ``BF16_FACTOR`` (3) times the CPU's distance, plus ``BF16_FLOOR`` (1%) of
  the scale. The forward-pass check also asserts that each edit moves the exact result by more than that bound, so a
  GPU that dropped an edit would fail.
* greedy generation: the devices pick the same tokens up to the first step where they differ, and there the two picks
  must tie in the CPU's logits to within the float32 tolerance, or, in bfloat16, twice the CPU's own bfloat16 error on the
  prompts' logits. Random models have flat next-token distributions, so near-ties are common (bfloat16 and float64 pick
  different top tokens at up to 13% of these models' positions on the CPU): equal tokens at every step would fail by
  chance.

Without a CUDA GPU every test skips ("needs a CUDA GPU"). ``EMO_GPU_TEST_DEVICE`` names the device compared with the
CPU (default ``cuda``); ``cpu`` runs every check CPU against CPU, which tests the checks themselves without a GPU.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import pytest
import torch

import emo_core as ec
from emo_core.arch import ModelShape
from emo_core.attribution import loss_attribution, reading_attribution
from emo_core.forced import forced_pass, forced_recording, forced_replay
from emo_core.generation import encode
from emo_core.interventions import ComponentEdit, HeadAblation, Intervention, NeuronAblation, ResidualAddition, on_rows
from emo_core.reading import EmotionReading
from emo_core.replay import record, replay
from tests.conftest import FAMILIES, FAMILY_DTYPES, last_token_states, tiny_model
from tests.test_attribution import LAYERS, _means, _reading, _rows

DEVICE = os.environ.get("EMO_GPU_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FLOAT32_TOL = 1e-4
BF16_FACTOR = 3.0
BF16_FLOOR = 0.01
GENERATE = ec.GenerationSettings(max_new_tokens=8, min_new_tokens=8)  # every row runs all 8 steps on both devices
USERS = ("I lost my wallet\nSomeone handed it in.", "The shop was closed when I arrived, so I went home and cooked.")


@dataclass(frozen=True)
class Pair:
    """One tiny model in one dtype on the CPU and on the device under test; in bfloat16 also its exact twin."""

    cpu: ec.ModelBundle
    device: ec.ModelBundle
    exact: ec.ModelBundle | None  # bfloat16 only: the same (rounded) weights in float64, float32 for Gemma2

    @property
    def bundles(self) -> tuple[ec.ModelBundle, ...]:
        return (self.cpu, self.device) if self.exact is None else (self.cpu, self.device, self.exact)


@pytest.fixture(scope="module", autouse=True)
def full_float32_matmuls() -> Iterator[None]:
    """float32 matmuls in full precision on the GPU (TF32 would round them to 10 mantissa bits)."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


@pytest.fixture(scope="module", params=[(family, dtype) for dtype in DTYPES for family in FAMILIES], ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest, embedded: ec.ModelBundle) -> Pair:
    """A tiny model of one family in one dtype on the CPU, a copy of it on the device, and in bfloat16 the exact twin."""
    family, dtype = request.param
    model = tiny_model(family).to(DTYPES[dtype])
    name = f"tiny-{family}-{dtype}"
    cpu = ec.bundle_from(model, embedded.tokenizer, name=name)
    device = ec.bundle_from(copy.deepcopy(model).to(DEVICE), embedded.tokenizer, name=name)
    exact = None
    if dtype == "bfloat16":
        exact = ec.bundle_from(copy.deepcopy(model).to(FAMILY_DTYPES.get(family, torch.float64)), embedded.tokenizer, name=name)
    return Pair(cpu, device, exact)


def _bound(pair: Pair, on_cpu: torch.Tensor, exact: torch.Tensor | None) -> tuple[float, torch.Tensor]:
    """How far the device's result may be from the reference, and that reference: the CPU's result (float32) or the exact one."""
    on_cpu = on_cpu.detach().double().cpu()
    scale = float(on_cpu.abs().max())
    if pair.exact is None:
        return FLOAT32_TOL * scale, on_cpu
    exact = exact.detach().double().cpu()
    return BF16_FACTOR * float((on_cpu - exact).abs().max()) + BF16_FLOOR * scale, exact


def assert_as_on_cpu(pair: Pair, on_device: torch.Tensor, on_cpu: torch.Tensor, exact: torch.Tensor | None, what: str) -> float:
    """Assert the device's result is what the CPU gives (module docstring: how, per dtype); returns the bound used."""
    bound, reference = _bound(pair, on_cpu, exact)
    on_device = on_device.detach().double().cpu()
    assert on_device.shape == reference.shape, what
    assert bool(torch.isfinite(on_device).all()), f"{what}: the device's result has NaN or inf"
    error = float((on_device - reference).abs().max())
    assert error <= bound, f"{what}: the device is {error:.3g} from the reference, more than {bound:.3g}"
    return bound


def _vector(size: int, seed: int) -> torch.Tensor:
    """A random vector exactly representable in bfloat16, so every dtype's model gets the same values."""
    return torch.randn(size, generator=torch.Generator().manual_seed(seed)).bfloat16().double()


def _edits(shape: ModelShape) -> dict[str, list[Intervention]]:
    """One list of edits per intervention kind, strong enough to move every family's result well past the tolerances."""
    heads = shape.n_heads * shape.head_dim
    return {
        "heads-zero": [HeadAblation(((0, 1), (1, 2), (2, 0)))],
        "heads-mean": [HeadAblation(((1, 2), (2, 3), (0, 0)), "mean", {layer: 3 * _vector(heads, layer) for layer in range(3)})],
        "neurons-zero": [NeuronAblation(tuple((1, j) for j in range(0, shape.d_mlp, 2)))],
        "neurons-mean": [
            NeuronAblation(((0, 3), (2, 5), (2, 40)), "mean", {layer: 3 * _vector(shape.d_mlp, 10 + layer) for layer in (0, 2)})
        ],
        "steer-rms-last-row1": [ResidualAddition({1: _vector(shape.d_model, 20)}, alpha=4.0, rows=(1,))],
        "steer-unit-all": [
            ResidualAddition({0: _vector(shape.d_model, 21), 2: _vector(shape.d_model, 22)}, alpha=2.0, scale="unit", positions="all")
        ],
        "edit-attn_z": [ComponentEdit("attn_z", 1, tuple(range(8)), scale=3.0, add=10 * _vector(8, 30))],
        "edit-mlp_post-last-row0": [
            ComponentEdit("mlp_post", 1, (0, 4, 7, 9), scale=0.5, add=40 * _vector(4, 31), positions="last", rows=(0,))
        ],
    }


KINDS = (
    "heads-zero",
    "heads-mean",
    "neurons-zero",
    "neurons-mean",
    "steer-rms-last-row1",
    "steer-unit-all",
    "edit-attn_z",
    "edit-mlp_post-last-row0",
)


def _prompts(bundle: ec.ModelBundle) -> list[str]:
    """Two prompts of different lengths, so the batch is left-padded."""
    return [ec.chat_prompt(bundle, USERS[0], "Be brief."), ec.chat_prompt(bundle, USERS[1])]


def forward(bundle: ec.ModelBundle, prompts: Sequence[str], edits: Sequence[Intervention] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """``resid_post`` at every layer ``[layers, tokens, d_model]`` and the logits ``[tokens, vocab]``, at the batch's real tokens
    (padding is left out: what a fully masked query row holds differs between attention kernels and is never used)."""
    batch = encode(bundle, prompts)
    real = batch["attention_mask"].bool().cpu()
    layers = range(bundle.shape.n_layers)
    with torch.inference_mode(), ec.intervene(bundle, *edits), ec.capture(bundle, ["resid_post"], layers=layers) as seen:
        logits = bundle.model(**batch).logits
    states = torch.stack([seen[("resid_post", layer)] for layer in layers])[:, real]
    return states.double(), logits.double().cpu()[real]


@pytest.mark.parametrize("kind", KINDS)
def test_every_intervention_kind_gives_the_cpus_forward_pass(pair: Pair, kind: str) -> None:
    edits = _edits(pair.cpu.shape)[kind]
    prompts = _prompts(pair.cpu)
    results = [forward(bundle, prompts, edits) for bundle in pair.bundles]
    plain = forward(pair.exact or pair.cpu, prompts)
    for index, what in enumerate(("resid_post", "logits")):
        on_cpu, on_device, *exact = (result[index] for result in results)
        bound = assert_as_on_cpu(pair, on_device, on_cpu, exact[0] if exact else None, f"{kind}: {what}")
        moved = float((plain[index] - (exact[0] if exact else on_cpu)).abs().max())
        assert moved > bound, (
            f"{kind}: the edit moves {what} by {moved:.3g}, within the tolerance {bound:.3g}: the check would not see it dropped"
        )


def _logits(bundle: ec.ModelBundle, state: torch.Tensor) -> torch.Tensor:
    """The next-token scores ``[vocab]`` (float64) greedy decoding picked from, recomputed from the last layer's ``resid_post``
    state: final norm, unembedding, Gemma2's soft cap, and the end-of-sequence tokens ruled out (``min_new_tokens``)."""
    with torch.inference_mode():
        hidden = bundle.adapter.final_norm()(state.to(bundle.device, bundle.dtype)[None])
        logits = bundle.model.get_output_embeddings()(hidden)[0].double().cpu()
    cap = getattr(bundle.model.config, "final_logit_softcapping", None)
    if cap:
        logits = cap * torch.tanh(logits / cap)
    eos = bundle.model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    logits[[token for token in eos if token < len(logits)]] = -torch.inf
    return logits


def _generations(bundle: ec.ModelBundle) -> dict[str, tuple[list[str], list[Intervention]]]:
    """Prompts and edits: none; knockouts on every position (whole prompts run); steering only (a shared prompt's prefill runs once)."""
    shape = bundle.shape
    prompts = _prompts(bundle)
    steer = _vector(shape.d_model, 40)
    return {
        "plain": (prompts, []),
        "knockout": (
            prompts,
            [HeadAblation(((0, 1), (1, 2), (2, 0))), on_rows(NeuronAblation(tuple((1, j) for j in range(0, shape.d_mlp, 3))), (1,))],
        ),
        "steered": (
            [prompts[0], prompts[0]],
            [ResidualAddition({1: steer}, alpha=4.0, rows=(0,)), ResidualAddition({1: -steer}, alpha=2.0, rows=(1,))],
        ),
    }


@pytest.mark.parametrize("variant", ["plain", "knockout", "steered"])
def test_greedy_generation_picks_the_cpus_tokens_up_to_ties(pair: Pair, variant: str) -> None:
    prompts, edits = _generations(pair.cpu)[variant]
    last = pair.cpu.shape.n_layers - 1
    on_cpu = ec.generate(pair.cpu, prompts, GENERATE, edits, observe=(last,))
    on_device = ec.generate(pair.device, prompts, GENERATE, edits)
    prompt_logits = forward(pair.cpu, prompts, edits)[1]
    scale = float(prompt_logits.abs().max())
    if pair.exact is None:
        tie = FLOAT32_TOL * scale
    else:
        tie = 2 * float((prompt_logits - forward(pair.exact, prompts, edits)[1]).abs().max())
    for row, (cpu_reply, device_reply) in enumerate(zip(on_cpu, on_device, strict=True)):
        assert len(cpu_reply.token_ids) == len(device_reply.token_ids) == GENERATE.max_new_tokens, (variant, row)
        step = next((i for i, (a, b) in enumerate(zip(cpu_reply.token_ids, device_reply.token_ids, strict=True)) if a != b), None)
        if step is None:
            continue
        logits = _logits(pair.cpu, cpu_reply.states[step, 0])
        picked, other = cpu_reply.token_ids[step], device_reply.token_ids[step]
        assert float(logits.max() - logits[picked]) <= FLOAT32_TOL * scale, "the recomputed logits do not give the CPU's own pick"
        gap = float(logits[picked] - logits[other])
        assert gap <= tie, (
            f"{variant}, row {row}: step {step} picks {other} on the device, {gap:.3g} below the CPU's {picked} (ties: {tie:.3g})"
        )


def test_replay_from_the_lowest_changed_layer_equals_a_full_pass_as_on_the_cpu(pair: Pair) -> None:
    prompt = ec.chat_prompt(pair.cpu, USERS[0], "Be brief.")
    shape = pair.cpu.shape
    steering = [ResidualAddition({0: _vector(shape.d_model, 50)}, 2.0)]
    changes = [HeadAblation(((1, 0),), rows=(0,)), NeuronAblation(((2, 3), (1, 1)), rows=(2,))]
    layers = list(range(shape.n_layers))
    replayed, full = [], []
    for bundle in pair.bundles:
        replayed.append(replay(bundle, record(bundle, prompt, steering), changes, 3, layers).cpu())
        full.append(last_token_states(bundle, [prompt] * 3, [*steering, *changes], layers))
    exact = full[2] if pair.exact is not None else None
    assert_as_on_cpu(pair, full[1], full[0], exact, "full pass")
    assert_as_on_cpu(pair, replayed[1], full[0], exact, "replay against the CPU's full pass")
    if pair.exact is None:
        error = float((replayed[1] - full[1]).abs().max())
        assert error <= FLOAT32_TOL * float(full[1].abs().max()), f"replay against the device's own full pass: {error:.3g}"
    assert not torch.allclose(replayed[1][0, 1:], replayed[1][1, 1:]) and torch.equal(replayed[1][0, 0], replayed[1][1, 0])


def test_teacher_forced_passes_and_replays_read_as_on_the_cpu(pair: Pair) -> None:
    """``forced_pass`` and ``forced_replay``: what the knockout curves, the effect meter and the causal stage read."""
    head = HeadAblation(((1, 0),))
    neurons = NeuronAblation(((2, 3), (1, 1)), "mean", {layer: _vector(pair.cpu.shape.d_mlp, 60 + layer) for layer in (1, 2)})
    row = _rows(pair.cpu)[0]
    rows = [replace(row, edits=(*row.edits, head)), row, replace(row, edits=(*row.edits, neurons))]
    changes = [on_rows(head, (0,)), on_rows(neurons, (2,))]
    passes, replays = [], []
    for bundle in pair.bundles:
        passes.append(forced_pass(bundle, rows, LAYERS)[0])
        replays.append(forced_replay(bundle, forced_recording(bundle, row), changes, 3, LAYERS))
    exact = passes[2] if pair.exact is not None else None
    assert_as_on_cpu(pair, passes[1], passes[0], exact, "forced pass")
    assert_as_on_cpu(pair, replays[1], passes[0], exact, "forced replay against the CPU's forced pass")


def _exact_reading(reading: EmotionReading) -> EmotionReading:
    """The same reading in float64, for the exact twin (the values are bfloat16's, so nothing but the arithmetic changes)."""
    return EmotionReading(reading.layers, reading.units.double(), reading.zero.double(), reading.one.double())


def _effects_compare(pair: Pair, per_bundle: list[dict], what: str) -> None:
    for kind in ("head", "neuron"):
        for mode in ("zero", "mean"):
            values = [effects[kind][mode] for effects in per_bundle]
            assert_as_on_cpu(pair, values[1], values[0], values[2] if pair.exact is not None else None, f"{what}: {kind}s, {mode}")


def test_loss_attribution_gives_the_cpus_effects(pair: Pair) -> None:
    means = _means(pair.cpu)
    prompts = _prompts(pair.cpu)
    runs = [loss_attribution(bundle, prompts, means) for bundle in pair.bundles]
    assert runs[0][1] == runs[1][1], "token counts"
    totals = [torch.tensor([run[0]]) for run in runs]
    assert_as_on_cpu(pair, totals[1], totals[0], totals[2] if pair.exact is not None else None, "summed loss")
    _effects_compare(pair, [run[2] for run in runs], "loss attribution")


def test_reading_attribution_gives_the_cpus_effects(pair: Pair) -> None:
    """The causal stage's call: a reading (CPU tensors, as a cache gives them) over teacher-forced steered rows."""
    reading, means, rows = _reading(pair.cpu), _means(pair.cpu), _rows(pair.cpu)
    weights = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 0.5, 0, 0, -0.5]])
    readings: list[EmotionReading] = [reading, reading, _exact_reading(reading)]
    runs = [reading_attribution(bundle, readings[i], rows, weights, means) for i, bundle in enumerate(pair.bundles)]
    _effects_compare(pair, runs, "reading attribution")
