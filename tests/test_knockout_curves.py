"""How the knockout curves batch their replays: every row once, in order, no batch running more layers than it needs to."""

from __future__ import annotations

from emo_core.knockout_curves import _batches


def test_batches_cover_every_row_once_and_split_where_the_lowest_layer_jumps() -> None:
    lows = [0] * 40 + [20] * 10 + [25] * 3
    batches = _batches(lows, 28, 32)
    assert [i for start, end in batches for i in range(start, end)] == list(range(len(lows)))
    assert all(0 < end - start <= 32 for start, end in batches)
    assert all(lows[start] == 20 or lows[start] == 25 for start, end in batches if end > 40)  # late rows never ride with layer 0
    assert _batches([5], 28, 32) == [(0, 1)] and _batches([], 28, 32) == []
