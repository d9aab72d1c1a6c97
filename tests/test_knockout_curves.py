"""How the knockout curves batch their replays: every row once, in order, no batch running more layers than it needs to."""

from __future__ import annotations

from dataclasses import replace

import torch

import emo_core as ec
from emo_core.forced import ForcedReply, forced_pass
from emo_core.interventions import HeadAblation, NeuronAblation
from emo_core.knockout_curves import _batches, _Plan, _readings
from emo_core.reading import EmotionReading
from tests.conftest import exact


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
