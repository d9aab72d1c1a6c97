"""Live generations of many sessions decoded together, in one batch on the shared model.

A decode step for 24 rows costs far less on a CPU than eight steps of 3 rows, so when a class presses *Generate* at
once, running their generations one after another wastes most of the machine. A ``SharedBatch`` (one per loaded model)
keeps one running batch: a generation that arrives while it runs is read (its prompt's prefill, alone, with its own
edits) and joins the batch at the next step boundary; every request keeps its own interventions (limited to its rows),
decoding settings, seeded generators and stop, and streams its own rows. Rows that end leave the batch.

The batch is bounded by rows (``max_rows``) and by the memory of its KV cache (``max_cache_bytes``); a request that does
not fit waits until rows leave. The batch holds the model's turn (``turns.Turns``) while it runs, so work that needs the
model alone (the chance checks, teacher forcing) waits for it, and the batch waits for that work.

A row decoded in a batch picks its tokens exactly as alone (``generation.Picker``); what can differ is the arithmetic of
a larger batch (other kernels, a longer padded cache), which on the built-in model changed no token in the checks of
``bench/bench_load.py`` and ``tests/test_batching.py``. Where the model's cache cannot be merged (sliding-window
layers, as the model's config says), requests run one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from emo_core.errors import LimitError
from emo_core.generation import GenerationSettings, Picker, Reply, encode, first_inputs, forward_step, grow_rows, replies_of
from emo_core.interventions import EditPlan, Intervention, on_rows
from emo_core.models import ModelBundle
from emo_core.turns import Turns

MAX_ROWS = 48  # rows decoded at once: a class of 16 sessions with three replies each
MAX_CACHE_BYTES = 512 * 2**20  # the running batch's KV cache at most: about a quarter of the app's memory on the built-in model
MAX_QUEUED = 64  # requests waiting for room in the batch; beyond this a request is refused at once
WAIT_S = 600.0  # a request's longest wait for its next step before it gives up with a message (a stuck model)


@dataclass(eq=False)
class _Request:
    """One caller's generation, as the batch sees it, and its rows' tokens and states so far."""

    batch: dict[str, torch.Tensor]
    settings: GenerationSettings
    interventions: tuple[Intervention, ...]
    observe: tuple[int, ...]
    steps: int = 0
    finished: bool = False
    cancelled: bool = False
    error: BaseException | None = None
    picker: Picker | None = None
    tokens: list[list[int]] = field(init=False)
    states: list[list[torch.Tensor]] = field(init=False)
    ended: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = [[] for _ in range(self.rows)]
        self.states = [[] for _ in range(self.rows)]
        self.ended = [False] * self.rows

    @property
    def rows(self) -> int:
        return len(self.batch["input_ids"])


def _mergeable(cache: DynamicCache) -> bool:
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - tensor.shape[dim]
    if extra == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _joined(a: DynamicCache, a_mask: torch.Tensor, b: DynamicCache, b_mask: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
    """One cache and attention mask for the rows of ``a`` then ``b``; the shorter is left-padded with masked zeros, which
    attention ignores (every row keeps its own positions)."""
    width = max(a_mask.shape[1], b_mask.shape[1])  # each mask has one column more than its cache: the next input's
    for mine, theirs in zip(a.layers, b.layers, strict=True):
        mine.keys = torch.cat([_left_pad(mine.keys, width - 1, -2), _left_pad(theirs.keys, width - 1, -2)])
        mine.values = torch.cat([_left_pad(mine.values, width - 1, -2), _left_pad(theirs.values, width - 1, -2)])
    return a, torch.cat([_left_pad(a_mask, width, 1), _left_pad(b_mask, width, 1)])


def _kept(cache: DynamicCache, mask: torch.Tensor, rows: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
    """The cache and mask of ``rows`` only, without the columns that are padding in all of them."""
    mask = mask[rows]
    start = int(mask.any(dim=0).int().argmax())
    for layer in cache.layers:
        layer.keys = layer.keys[rows, :, start:]
        layer.values = layer.values[rows, :, start:]
    return cache, mask[:, start:]


class SharedBatch:
    """The one running batch of live generations on ``bundle`` (see the module's docstring)."""

    def __init__(
        self,
        bundle: ModelBundle,
        turns: Turns | None = None,
        max_rows: int = MAX_ROWS,
        max_cache_bytes: int = MAX_CACHE_BYTES,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.bundle, self.turns = bundle, turns or Turns()
        self.max_rows, self.max_cache_bytes, self.max_queued = max_rows, max_cache_bytes, max_queued
        shape = bundle.shape
        element = next(bundle.model.parameters()).element_size()
        kv_heads = getattr(bundle.model.config, "num_key_value_heads", None) or shape.n_heads
        self.per_token = 2 * shape.n_layers * kv_heads * shape.head_dim * element  # keys and values of one row, one token
        self._lock = threading.Condition()
        self._queued: list[_Request] = []
        self._running: list[_Request] = []
        self._driver: threading.Thread | None = None
        self._has_turn = False  # whether the batch's thread holds the model's turn now
        self.merges = _mergeable(DynamicCache(config=bundle.model.config))  # else one request at a time
        self.largest = 0  # the most rows decoded at once so far (for the load bench)

    def stream(
        self,
        prompts: Sequence[str],
        settings: GenerationSettings,
        interventions: Sequence[Intervention] = (),
        observe: Sequence[int] = (),
        on_wait: Callable[[], object] | None = None,
    ) -> Iterator[list[Reply]]:
        """Every row's reply so far after each of its steps, like ``generation.stream_replies`` (whose replies it equals),
        decoded in the shared batch. ``on_wait`` is called once if the request cannot join at once (the batch is full, or
        other work holds the model). Closing the iterator early (a Stop) takes the rows out at the next step.

        Raises:
            LimitError: ``max_queued`` requests wait already; nothing was queued.
        """
        request = _Request(encode(self.bundle, prompts), settings, tuple(interventions), tuple(observe))
        if request.rows > self.max_rows:
            raise LimitError(f"A generation of {request.rows} rows is more than the shared batch's {self.max_rows}.")
        with self._lock:
            if len(self._queued) >= self.max_queued:
                raise LimitError(
                    f"The shared model is busy and {len(self._queued)} other requests are already waiting for it; try again in a minute."
                )
            self._queued.append(request)
            # It waits when other work has the model, or when it does not fit beside the rows running or about to join.
            must_wait = (self.turns.busy and not self._has_turn) or not self._fits(request, [*self._running, *self._queued[:-1]])
            if self._driver is None:  # no batch runs: this request starts one
                self._driver = threading.Thread(target=self._drive, name="shared-batch")
                self._driver.start()
        if must_wait and on_wait is not None:
            on_wait()
        seen = 0
        try:
            while True:
                with self._lock:
                    if not self._lock.wait_for(lambda seen=seen: request.steps > seen or request.finished, timeout=WAIT_S):
                        raise LimitError("The shared model stopped answering; reload the page and try again.")
                    if request.error is not None:
                        raise request.error
                    seen, finished = request.steps, request.finished
                    tokens = [list(row) for row in request.tokens]
                    states = [list(row) for row in request.states]
                if seen:
                    yield replies_of(self.bundle, tokens, states, request.batch["input_ids"].shape[1])
                if finished:
                    return
        finally:
            with self._lock:
                request.cancelled = True
                if request in self._queued:
                    self._queued.remove(request)

    def _fits(self, request: _Request, running: Sequence[_Request]) -> bool:
        if not running:
            return True
        if not self.merges:
            return False
        rows = sum(r.rows for r in running) + request.rows
        width = max(r.batch["input_ids"].shape[1] + r.settings.max_new_tokens for r in (*running, request))
        return rows <= self.max_rows and rows * width * self.per_token <= self.max_cache_bytes

    def _drive(self) -> None:
        """The batch's thread: holds the model's turn while any request runs or waits, admits requests at step
        boundaries, steps every running row once per loop, and hands each request its tokens."""
        self.turns.acquire(bounded=False)
        self._has_turn = True
        try:
            cache: DynamicCache | None = None
            mask = positions = inputs = torch.empty(0)
            plan: EditPlan | None = None
            while True:
                with self._lock:
                    joining = []
                    for request in list(self._queued):
                        if self._fits(request, [*self._running, *joining]):
                            self._queued.remove(request)
                            joining.append(request)
                    if not self._running and not joining:
                        self._driver = None
                        return
                for request in joining:  # each reads its prompt alone, with its own edits, and picks its first token
                    joined = self._prefill(request)
                    if joined is None:
                        continue
                    r_cache, r_mask, r_positions, r_inputs = joined
                    if cache is None:
                        cache, mask, positions, inputs = r_cache, r_mask, r_positions, r_inputs
                    else:
                        cache, mask = _joined(cache, mask, r_cache, r_mask)
                        positions, inputs = torch.cat([positions, r_positions]), torch.cat([inputs, r_inputs])
                    with self._lock:
                        self._running.append(request)
                if joining:
                    plan = self._plan()
                if cache is not None and self._running:
                    self.largest = max(self.largest, len(inputs))
                    observed = self._observed()
                    logits, cache, states = forward_step(self.bundle, inputs, mask, positions, cache, plan, observed)
                    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                    positions = positions + 1
                    start, picked = 0, []
                    for request in self._running:
                        rows = slice(start, start + request.rows)
                        tokens = request.picker.pick(logits[rows])
                        self._hand(request, tokens, None if states is None else states[rows], observed)
                        picked.append(tokens)
                        start += request.rows
                    inputs = torch.cat(picked)[:, None]
                keep = [r for r in self._running if not (r.finished or r.cancelled)]
                if len(keep) != len(self._running):
                    rows, start = [], 0
                    for request in self._running:
                        if request in keep:
                            rows.extend(range(start, start + request.rows))
                        start += request.rows
                    with self._lock:
                        self._running = keep
                    if keep:
                        index = torch.tensor(rows, device=mask.device)
                        cache, mask = _kept(cache, mask, index)
                        positions, inputs = positions[index], inputs[index]
                        plan = self._plan()
                    else:
                        cache, plan = None, None
        except Exception as error:  # every waiting caller hears of it, instead of waiting out its deadline
            with self._lock:
                for request in (*self._running, *self._queued):
                    request.error = error
                    request.finished = True
                self._running, self._queued, self._driver = [], [], None
                self._lock.notify_all()
        finally:
            self._has_turn = False
            self.turns.release()

    def _prefill(self, request: _Request) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Read ``request``'s prompts alone and pick its first tokens; its cache, mask, next positions and inputs, or
        ``None`` when it ended (or was stopped) at once."""
        if request.cancelled:
            return None
        batch = request.batch
        plan = EditPlan(self.bundle.adapter, request.interventions) if request.interventions else None
        request.picker = Picker(self.bundle, batch["input_ids"], request.settings)
        inputs, positions, cache = first_inputs(self.bundle, batch, plan)
        logits, cache, states = forward_step(self.bundle, inputs, batch["attention_mask"], positions, cache, plan, request.observe)
        tokens = request.picker.pick(logits)
        self._hand(request, tokens, states, request.observe)
        if request.finished:
            return None
        mask = torch.cat([batch["attention_mask"], torch.ones_like(batch["attention_mask"][:, :1])], dim=1)
        return cache, mask, positions[:, -1:] + 1, tokens[:, None]

    def _hand(self, request: _Request, tokens: torch.Tensor, states: torch.Tensor | None, layers: Sequence[int]) -> None:
        """Give ``request`` its rows' new tokens and the states (observed at ``layers``) that produced them, as
        ``generation`` grows a reply."""
        kept = None
        if states is not None and request.observe:
            kept = states[:, [list(layers).index(layer) for layer in request.observe]]
        with self._lock:
            grow_rows(tokens, kept, request.picker.eos_ids, request.ended, request.tokens, request.states)
            request.steps += 1
            request.finished = request.picker.done
            self._lock.notify_all()

    def _observed(self) -> tuple[int, ...]:
        return tuple(sorted({layer for request in self._running for layer in request.observe}))

    def _plan(self) -> EditPlan | None:
        """One plan of every running request's edits, each limited to that request's rows of the batch."""
        edits, start = [], 0
        for request in self._running:
            own = tuple(range(start, start + request.rows))
            for edit in request.interventions:
                edits.append(on_rows(edit, own if edit.rows is None else tuple(own[r] for r in edit.rows)))
            start += request.rows
        return EditPlan(self.bundle.adapter, edits) if edits else None
