"""The faster of two layouts for the matrix-vector products of token-by-token decoding on CPUs.

Decoding one or two rows is bound by reading the weights, and which BLAS kernel reads them faster
depends on the CPU and the BLAS build: ``x @ W.T`` (plain ``F.linear``) or ``W @ x.T`` with two
columns (the *column layout*; a single row is duplicated to two columns). Either can win by a wide
margin on a given CPU (``bench/README.md``), so nothing is assumed: the first decode on a model times
both layouts on that model's own linear weights, at 1 to ``MAX_ROWS`` rows, and uses the column layout
for a row count only where it took at most ``MARGIN`` of the plain time (a tie keeps plain, so noise
cannot flip decoding into a slower path). Measuring is bounded (no round starts after ``BUDGET_S``)
and runs once per process for each set of weight shapes, dtype and thread count (cached,
thread-safe); ``layout_choice()`` returns the decision and its ``why``. The decision reflects the
machine as it was while measuring, busy or quiet.

``EMO_DECODE_LAYOUT`` overrides the measurement for the whole process (read once): ``auto``
(default: measure), ``plain`` or ``columns``. ``forced_layout()`` does the same for one block in
the calling context (benchmarks, tests).

Inside ``small_batch_linear(choice)``, ``nn.Linear`` layers on CPU inputs of a row count that the
choice gives to the column layout are computed in that layout. The model is not touched: the first
block that uses the column layout wraps ``nn.Linear.forward`` once per process, and the wrapper
computes plain ``F.linear`` unless the calling thread/context is inside such a block (one
context-variable read per layer). A ``TorchFunctionMode`` did the same at about 2 us on every torch
call of the forward pass, 3-4 ms per SmolLM2 decode step. A choice that is plain for every row count
changes nothing at all.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from emo_core.errors import EmoCoreError

Layout = Literal["plain", "columns"]

MAX_ROWS = 4
MARGIN = 0.8  # the column layout must take at most this fraction of the plain time to be chosen
ENV_VAR = "EMO_DECODE_LAYOUT"
ROUNDS = 3  # timings per row count and layout, interleaved; the fastest counts
BUDGET_S = 0.3  # no round starts after this much measuring (a busy CPU can make one round take seconds)
PIECE_BYTES = 4 << 20  # weights larger than this are timed on row blocks of this size

_FORCED: ContextVar[Layout | None] = ContextVar("emo_forced_layout", default=None)


@dataclass(frozen=True)
class LayoutChoice:
    """Which layout decoding uses for each row count from 1 to ``MAX_ROWS``, and why.

    ``plain_ms`` and ``columns_ms`` are the measured time of all the model's linear layers for one
    decode step, per row count (empty when the layout was forced rather than measured).
    """

    columns: tuple[bool, ...]
    source: str
    plain_ms: tuple[float, ...] = ()
    columns_ms: tuple[float, ...] = ()
    calibration_ms: float = 0.0

    def layout(self, rows: int) -> Layout:
        return "columns" if 0 < rows <= len(self.columns) and self.columns[rows - 1] else "plain"

    @property
    def any_columns(self) -> bool:
        return any(self.columns)

    @property
    def why(self) -> str:
        """One line, e.g. "column layout for 1-2 rows: 10.1/9.8 ms vs 25.7/40.2 ms plain (measured at start)"."""
        parts = []
        start = 1
        for rows in range(1, len(self.columns) + 1):
            if rows < len(self.columns) and self.columns[rows] == self.columns[start - 1]:
                continue
            columns = self.columns[start - 1]
            span = f"{start} row{'s' if rows > 1 else ''}" if start == rows else f"{start}-{rows} rows"
            part = f"{'column' if columns else 'plain'} layout for {span}"
            if self.plain_ms:
                mine, other = (self.columns_ms, self.plain_ms) if columns else (self.plain_ms, self.columns_ms)
                slash = "/".join
                part += (
                    f": {slash(f'{mine[r]:.1f}' for r in range(start - 1, rows))} ms"
                    f" vs {slash(f'{other[r]:.1f}' for r in range(start - 1, rows))} ms {'plain' if columns else 'columns'}"
                )
            parts.append(part)
            start = rows + 1
        return "; ".join(parts) + f" ({self.source})"


def _forced(layout: Layout, source: str) -> LayoutChoice:
    return LayoutChoice(columns=(layout == "columns",) * MAX_ROWS, source=source)


@functools.cache
def env_layout() -> Layout | None:
    """The layout forced by ``EMO_DECODE_LAYOUT`` (read once per process), or None to measure."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value == "auto":
        return None
    if value not in ("plain", "columns"):
        raise EmoCoreError(f"{ENV_VAR} must be plain, columns or auto, not {value!r}; fix or unset it.")
    return value  # type: ignore[return-value]


@contextmanager
def forced_layout(layout: Layout | None) -> Iterator[None]:
    """Decode with ``layout`` (or measure, with None) in this thread while the block runs."""
    if layout not in (None, "plain", "columns"):
        raise ValueError(f"layout must be 'plain', 'columns' or None, not {layout!r}")
    reset = _FORCED.set(layout)
    try:
        yield
    finally:
        _FORCED.reset(reset)


def _linear_by_columns(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` as ``weight @ x.T`` (a single row is duplicated to two columns); few torch calls,
    as each costs microseconds."""
    flat = x.reshape(-1, x.shape[-1])
    rows = flat.shape[0]
    columns = torch.mm(weight, torch.cat((flat, flat)).T) if rows == 1 else torch.mm(weight, flat.T)  # [out_features, 2 or rows]
    out = columns.T[:rows].contiguous()  # row-major like F.linear: attention's fast kernel refuses strided queries and keys
    if bias is not None:
        out = out + bias
    return out.view(*x.shape[:-1], weight.shape[0])


def _linear_weights(model: nn.Module) -> list[torch.Tensor]:
    """The CPU weights of the model's ``nn.Linear`` layers, in forward order, each once (tied ones too)."""
    seen: set[int] = set()
    weights = []
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.device.type == "cpu" and id(module.weight) not in seen:
            seen.add(id(module.weight))
            weights.append(module.weight.detach())
    return weights


@dataclass(frozen=True)
class _Group:
    """The weights of one shape and dtype, as row blocks of at most ``PIECE_BYTES`` (so that
    successive timings read different memory, as decoding does)."""

    blocks: list[torch.Tensor]
    per_step: float  # blocks that one decode step reads
    inputs: dict[int, torch.Tensor]  # decode-step input [rows, 1, in_features] per row count


def _groups(weights: list[torch.Tensor]) -> list[_Group]:
    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for weight in weights:
        by_kind.setdefault((tuple(weight.shape), weight.dtype), []).append(weight)
    groups = []
    for ((rows, cols), dtype), members in by_kind.items():
        block = max(1, min(rows, PIECE_BYTES // (cols * members[0].element_size())))
        blocks = [w[i : i + block] for w in members for i in range(0, rows - block + 1, block)]
        inputs = {n: torch.randn(n, 1, cols, dtype=dtype) for n in range(1, MAX_ROWS + 1)}
        groups.append(_Group(blocks, len(members) * rows / block, inputs))
    return groups


def _measure(weights: list[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Milliseconds that one decode step's linear layers take in each layout, at 1..MAX_ROWS rows.

    A timing runs one fresh block of every weight shape and scales it to the step; the timings of
    the two layouts alternate, in alternating order, and the fastest of ``ROUNDS`` counts (fewer
    rounds when the first ones used up ``BUDGET_S``).
    """
    groups = _groups(weights)
    layouts: dict[Layout, Callable] = {"plain": F.linear, "columns": _linear_by_columns}
    best = {(rows, layout): math.inf for rows in range(1, MAX_ROWS + 1) for layout in layouts}
    with torch.inference_mode():
        for group in groups:  # map the pages once (weights may be memory-mapped) reading one number per page, not caching them
            for block in group.blocks[: 2 * ROUNDS * MAX_ROWS]:
                block.reshape(-1)[:: max(1, 4096 // block.element_size())].sum()
        warm = groups[0]
        for layout in layouts.values():  # the first call of a BLAS path may set it up
            for rows in (1, 2):
                layout(warm.inputs[rows], warm.blocks[-1], None)
        fresh, deadline = 0, time.perf_counter() + BUDGET_S
        for round_ in range(ROUNDS):
            if round_ and time.perf_counter() > deadline:
                break
            for rows in range(1, MAX_ROWS + 1):
                for layout in ("plain", "columns") if (round_ + rows) % 2 else ("columns", "plain"):
                    total = 0.0
                    for group in groups:
                        block = group.blocks[fresh % len(group.blocks)]
                        start = time.perf_counter()
                        layouts[layout](group.inputs[rows], block, None)
                        total += (time.perf_counter() - start) * group.per_step
                    fresh += 1
                    best[(rows, layout)] = min(best[(rows, layout)], total * 1000)
    counts = range(1, MAX_ROWS + 1)
    return tuple(best[(rows, "plain")] for rows in counts), tuple(best[(rows, "columns")] for rows in counts)


_CHOICES: dict[tuple, LayoutChoice] = {}
_LOCK = threading.Lock()


def layout_choice(model: nn.Module) -> LayoutChoice:
    """The layout decoding uses for ``model``: forced (``forced_layout()``, then ``EMO_DECODE_LAYOUT``)
    or measured once per process for its weight shapes, dtype and thread count."""
    forced = _FORCED.get()
    if forced is not None:
        return _forced(forced, "forced_layout()")
    env = env_layout()
    if env is not None:
        return _forced(env, f"{ENV_VAR}={env}")
    weights = _linear_weights(model)
    if not weights:
        return _forced("plain", "no linear weights on the CPU")
    key = (torch.get_num_threads(), tuple(sorted((tuple(w.shape), str(w.dtype)) for w in weights)))
    with _LOCK:
        choice = _CHOICES.get(key)
        if choice is None:
            start = time.perf_counter()
            plain_ms, columns_ms = _measure(weights)
            columns = tuple(c <= MARGIN * p for p, c in zip(plain_ms, columns_ms, strict=True))
            calibration_ms = (time.perf_counter() - start) * 1000
            choice = LayoutChoice(columns, "measured at start", plain_ms, columns_ms, calibration_ms)
            _CHOICES[key] = choice
    return choice


def reset_choices() -> None:
    """Forget measured choices and the environment override (tests)."""
    with _LOCK:
        _CHOICES.clear()
    env_layout.cache_clear()


_COLUMNS: ContextVar[tuple[bool, ...] | None] = ContextVar("emo_columns", default=None)
_previous_forward: Callable[[nn.Linear, torch.Tensor], torch.Tensor] = nn.Linear.forward


def _linear_forward(self: nn.Linear, input: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, in the column layout where this context's ``small_batch_linear`` says so."""
    columns = _COLUMNS.get()
    if columns is not None and input.device.type == "cpu" and input.shape[-1]:
        rows = input.numel() // input.shape[-1]
        if 0 < rows <= len(columns) and columns[rows - 1]:
            return _linear_by_columns(input, self.weight, self.bias)
    return _previous_forward(self, input)


def _install() -> None:
    global _previous_forward
    if nn.Linear.forward is _linear_forward:
        return
    with _LOCK:
        if nn.Linear.forward is not _linear_forward:
            _previous_forward = nn.Linear.forward
            nn.Linear.forward = _linear_forward


@contextmanager
def _columns(columns: tuple[bool, ...]) -> Iterator[None]:
    _install()
    reset = _COLUMNS.set(columns)
    try:
        yield
    finally:
        _COLUMNS.reset(reset)


def small_batch_linear(choice: LayoutChoice) -> AbstractContextManager[object]:
    """Compute small-batch linear layers as ``choice`` says while the block runs (CPU only, this thread)."""
    return _columns(choice.columns) if choice.any_columns else nullcontext()
