"""Interventions as values, and the context managers that apply them with hooks.

An intervention is a small frozen value (which heads, which neurons, which vector, what strength,
which batch rows). ``intervene(bundle, *interventions)`` registers forward hooks for exactly the
duration of a ``with`` block and removes them in ``finally``. Hooks are also gated by a context
variable, so a forward pass running in another thread (another user of the shared model) never
sees them, even while they are registered.
"""

from __future__ import annotations

import contextvars
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import torch
from torch import nn

from emo_core.arch import Adapter, Site
from emo_core.errors import InvalidInterventionError

if TYPE_CHECKING:  # the model module imports transformers; values and hooks do not need it
    from emo_core.models import ModelBundle

Positions = Literal["all", "last"]
Rows = tuple[int, ...] | None
AblationMode = Literal["zero", "mean"]
ComponentSite = Literal["attn_z", "mlp_post"]

_ACTIVE: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("emo_active_hooks", default=frozenset())
_TOKENS = itertools.count(1)


@dataclass(frozen=True, eq=False)
class ComponentEdit:
    """``x[..., channels] <- x[..., channels] * scale + add`` at a head/neuron site of one layer.

    Zero ablation is ``scale=0``; mean ablation adds the mean; setting a value is ``scale=0, add=v``;
    amplifying is ``scale>1``; injecting a difference vector is ``scale=1, add=delta``.
    """

    site: ComponentSite
    layer: int
    channels: tuple[int, ...]
    scale: float = 0.0
    add: torch.Tensor | None = None  # [len(channels)]
    positions: Positions = "all"
    rows: Rows = None


@dataclass(frozen=True, eq=False)
class HeadAblation:
    """Switch attention heads off by zeroing (or mean-filling) their slice of the o_proj input.

    ``means`` maps a layer to the mean o_proj input ``[n_heads * head_dim]`` (needed for ``mode="mean"``).
    """

    heads: tuple[tuple[int, int], ...]
    mode: AblationMode = "zero"
    means: Mapping[int, torch.Tensor] | None = None
    rows: Rows = None


@dataclass(frozen=True, eq=False)
class NeuronAblation:
    """Switch MLP neurons off by zeroing (or mean-filling) their down_proj input entries."""

    neurons: tuple[tuple[int, int], ...]
    mode: AblationMode = "zero"
    means: Mapping[int, torch.Tensor] | None = None  # layer -> [d_mlp]
    rows: Rows = None


@dataclass(frozen=True, eq=False)
class ResidualAddition:
    """Add ``alpha * v[l]`` (times ``rms(h)`` when ``scale="rms"``) to the output of decoder layers.

    With ``positions="last"`` and a KV cache this steers the last prompt token and every generated token.
    """

    vectors: Mapping[int, torch.Tensor]  # layer -> [d_model]
    alpha: float
    scale: Literal["rms", "unit"] = "rms"
    positions: Positions = "last"
    rows: Rows = None


Intervention = ComponentEdit | HeadAblation | NeuronAblation | ResidualAddition
Hook = Callable[..., object]


def on_rows(intervention: Intervention, rows: Rows) -> Intervention:
    """The same intervention limited to the given batch rows (``None``: every row); the one way an edit is given rows."""
    return replace(intervention, rows=rows)


def untuple(output: object) -> torch.Tensor:
    """The hidden-state tensor of a module output (tuple in some transformers versions, tensor in others)."""
    tensor = output[0] if isinstance(output, tuple) else output
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"expected a tensor output, got {type(tensor).__name__}")
    return tensor


def _retuple(original: object, tensor: torch.Tensor) -> object:
    return (tensor, *original[1:]) if isinstance(original, tuple) else tensor


def _row_list(rows: Rows, batch: int) -> list[int]:
    """The batch rows an edit applies to, sorted, negative ones counted from the end as indexing counts them."""
    if rows is None:
        return list(range(batch))
    if rows and max(rows) >= batch:
        raise InvalidInterventionError(f"Row {max(rows)} does not exist in a batch of {batch}.")
    if rows and min(rows) < -batch:
        raise InvalidInterventionError(f"Row {min(rows)} does not exist in a batch of {batch}.")
    return sorted({row % batch for row in rows})


def _runs(footprints: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[list[int]]:
    """Split items, given as ``(rows, channels)``, into consecutive runs in which no two items share a (row, channel).

    The items of one run touch disjoint cells, so applying them at once equals applying them one after another;
    the runs apply in order, so edits that overlap keep their order.
    """
    runs: list[list[int]] = []
    taken: set[tuple[int, int]] = set()
    for i, (rows, channels) in enumerate(footprints):
        cells = {(row, channel) for row in rows for channel in channels}
        if not runs or not taken.isdisjoint(cells):
            runs.append([])
            taken = set()
        runs[-1].append(i)
        taken |= cells
    return runs


def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch computes ``tensor * python_float`` in for a tensor of ``dtype`` (float32 for 16-bit floats)."""
    return torch.promote_types(dtype, torch.float32)


def _head_channels(adapter: Adapter, layer: int, head: int) -> range:
    if not 0 <= head < adapter.shape.n_heads:
        raise InvalidInterventionError(f"Head {head} does not exist; layers have heads 0 to {adapter.shape.n_heads - 1}.")
    return range(head * adapter.shape.head_dim, (head + 1) * adapter.shape.head_dim)


def _ablation_edits(
    adapter: Adapter,
    site: ComponentSite,
    units: Sequence[tuple[int, int]],
    channels_of: Callable[[int, int], Sequence[int]],
    mode: AblationMode,
    means: Mapping[int, torch.Tensor] | None,
    rows: Rows,
) -> list[ComponentEdit]:
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, unit in units:
        layer = adapter.normalize_layer(layer)
        by_layer[layer].extend(channels_of(layer, unit))
    edits = []
    for layer, channels in sorted(by_layer.items()):
        add = None
        if mode == "mean":
            if means is None or layer not in means:
                raise InvalidInterventionError(f"Mean ablation at layer {layer} needs mean activations from the cache.")
            add = means[layer][channels]
        edits.append(ComponentEdit(site, layer, tuple(channels), 0.0, add, "all", rows))
    return edits


def _neuron_channels(adapter: Adapter) -> Callable[[int, int], list[int]]:
    def channels(layer: int, neuron: int) -> list[int]:
        if not 0 <= neuron < adapter.shape.d_mlp:
            raise InvalidInterventionError(f"Neuron {neuron} does not exist; layers have neurons 0 to {adapter.shape.d_mlp - 1}.")
        return [neuron]

    return channels


def compile_edits(adapter: Adapter, intervention: Intervention) -> list[ComponentEdit | ResidualAddition]:
    """Lower a user-facing value to validated primitive edits."""
    if isinstance(intervention, HeadAblation):
        head_channels = lambda layer, head: _head_channels(adapter, layer, head)  # noqa: E731
        return _ablation_edits(
            adapter, "attn_z", intervention.heads, head_channels, intervention.mode, intervention.means, intervention.rows
        )
    if isinstance(intervention, NeuronAblation):
        return _ablation_edits(
            adapter, "mlp_post", intervention.neurons, _neuron_channels(adapter), intervention.mode, intervention.means, intervention.rows
        )
    if isinstance(intervention, ComponentEdit):
        width = adapter.shape.site_width(intervention.site)
        if any(not 0 <= c < width for c in intervention.channels):
            raise InvalidInterventionError(f"Channel index out of range for {intervention.site} (width {width}).")
        if intervention.add is not None and intervention.add.shape != (len(intervention.channels),):
            raise InvalidInterventionError("An edit's added values must have one entry per channel.")
        return [replace(intervention, layer=adapter.normalize_layer(intervention.layer))]
    if isinstance(intervention, ResidualAddition):
        vectors = {adapter.normalize_layer(layer): v for layer, v in intervention.vectors.items()}
        if any(v.shape != (adapter.shape.d_model,) for v in vectors.values()):
            raise InvalidInterventionError(f"Steering vectors must have {adapter.shape.d_model} entries.")
        return [replace(intervention, vectors=vectors)]
    raise InvalidInterventionError(f"Unknown intervention {type(intervention).__name__}.")


def touched_layers(adapter: Adapter, interventions: Sequence[Intervention]) -> list[int]:
    """The decoder layers any of ``interventions`` acts at, in order."""
    layers = {
        layer
        for intervention in interventions
        for edit in compile_edits(adapter, intervention)
        for layer in ([edit.layer] if isinstance(edit, ComponentEdit) else edit.vectors)
    }
    return sorted(layers)


def lowest_layer(adapter: Adapter, interventions: Sequence[Intervention]) -> int | None:
    """The lowest decoder layer any of ``interventions`` touches (``None`` for none): nothing below it changes."""
    return min(touched_layers(adapter, interventions), default=None)


@dataclass(frozen=True)
class _Affine:
    """``x * scale + add`` on ``[batch, pos, channels]``, with ``[batch, 1, channels]`` scales and adds.

    A cell no edit touches has scale 1 and add -0.0, which keep every value as it is (``y + -0.0`` is ``y``, signed zeros
    included), so nothing needs masking. ``scale`` is in the dtype torch multiplies the model's dtype by a Python float
    in, so an edited cell rounds exactly as ``x * edit.scale + edit.add`` does.
    """

    scale: torch.Tensor
    add: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scale).to(x.dtype).add_(self.add)

    @staticmethod
    def footprint(edit: ComponentEdit) -> tuple[Rows, Sequence[int], Positions]:
        return edit.rows, edit.channels, edit.positions

    @classmethod
    def build(
        cls, edits: Sequence[ComponentEdit], rows: Sequence[list[int]], batch: int, width: int, device: torch.device, dtype: torch.dtype
    ) -> _Affine:
        cells: list[int] = []
        scales: list[float] = []
        add_cells: list[int] = []
        adds: list[torch.Tensor] = []
        for edit, edit_rows in zip(edits, rows, strict=True):
            entry = {channel: k for k, channel in enumerate(edit.channels)}  # a repeated channel takes its last entry
            flat = [row * width + channel for row in edit_rows for channel in entry]
            cells.extend(flat)
            scales.extend([edit.scale] * len(flat))
            if edit.add is not None:
                add_cells.extend(flat)
                adds.append(edit.add.to(device=device, dtype=dtype)[list(entry.values())].repeat(len(edit_rows)))
        scale = torch.ones(batch * width, dtype=_opmath(dtype))
        scale[torch.tensor(cells, dtype=torch.long)] = torch.tensor(scales, dtype=scale.dtype)
        add = torch.full((batch * width,), -0.0, dtype=dtype, device=device)
        if adds:
            add[torch.tensor(add_cells, dtype=torch.long, device=device)] = torch.cat(adds)
        return cls(scale.view(batch, 1, width).to(device), add.view(batch, 1, width))


@dataclass(frozen=True)
class _Steer:
    """``h + alpha * size * vector`` on ``[batch, pos, d_model]``, with ``[batch, 1, 1]`` alphas and ``[batch, 1, d_model]`` vectors;
    ``size`` is ``rms`` of the layer's output in the rows ``by_rms`` marks, else 1.

    A row no addition touches has alpha 0, size 1 and a vector of -0.0, so it gains -0.0 and keeps every value. ``alpha`` is
    in the dtype torch multiplies the model's dtype by a Python float in, so a steered row rounds exactly as
    ``addition.alpha * size * vector`` does.
    """

    alpha: torch.Tensor
    by_rms: torch.Tensor
    vector: torch.Tensor

    def __call__(self, h: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return h + (self.alpha * torch.where(self.by_rms, size, 1.0)).to(h.dtype) * self.vector

    @staticmethod
    def footprint(item: tuple[ResidualAddition, torch.Tensor]) -> tuple[Rows, Sequence[int], Positions]:
        """An addition's rows and positions; it touches a row's whole hidden state, one channel as far as overlaps go."""
        return item[0].rows, (0,), item[0].positions

    @classmethod
    def build(
        cls,
        additions: Sequence[tuple[ResidualAddition, torch.Tensor]],
        rows: Sequence[list[int]],
        batch: int,
        width: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> _Steer:
        alpha = torch.zeros(batch, dtype=_opmath(dtype))
        by_rms = torch.zeros(batch, dtype=torch.bool)
        vector = torch.full((batch, width), -0.0, dtype=dtype, device=device)
        for (addition, v), addition_rows in zip(additions, rows, strict=True):
            index = torch.tensor(addition_rows, dtype=torch.long)
            alpha[index] = addition.alpha
            by_rms[index] = addition.scale == "rms"
            vector[index.to(device)] = v.to(device=device, dtype=dtype)
        return cls(alpha.view(batch, 1, 1).to(device), by_rms.view(batch, 1, 1).to(device), vector.unsqueeze(1))


Step = TypeVar("Step", _Affine, _Steer)


@dataclass(frozen=True)
class _Run(Generic[Step]):
    """Edits of one hook that share no (row, channel), as batch maps: of those at every position and of those at the
    last position only (``None`` where there are none), and of all of them (a decode step's one position is the last)."""

    every: Step | None
    last: Step | None
    both: Step

    def __call__(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """``x`` ``[batch, pos, width]`` edited, as a new tensor; ``extra`` (the steering size ``[batch, pos, 1]``) goes along."""
        if self.last is None or x.shape[1] == 1:
            return self.both(x, *extra)
        y = x.clone() if self.every is None else self.every(x, *extra)
        y[:, -1:] = self.last(y[:, -1:], *(e[:, -1:] for e in extra))
        return y


class _Group(Generic[Step]):
    """The edits at one hook, in order, as runs of batch maps built once per batch size, width, device, dtype and mode.

    A forward call of a new shape builds them and later calls reuse them (every decode step of a generation), so a
    batch of many rows' edits costs a few whole-tensor operations per run rather than a loop over the edits.
    """

    def __init__(self, items: Sequence, step: type[Step]) -> None:
        self.items, self.step = list(items), step
        self._built: dict[tuple, list[_Run[Step]]] = {}

    def runs(self, x: torch.Tensor) -> list[_Run[Step]]:
        """The runs for ``x`` ``[batch, pos, width]``; inference-mode tensors are kept apart, since autograd refuses them."""
        batch, width = x.shape[0], x.shape[-1]
        key = (batch, width, x.device, x.dtype, torch.is_inference_mode_enabled())
        if key not in self._built:
            footprints = [self.step.footprint(item) for item in self.items]
            rows = [_row_list(edit_rows, batch) for edit_rows, _, _ in footprints]

            def build(chosen: list[int]) -> Step:
                return self.step.build([self.items[i] for i in chosen], [rows[i] for i in chosen], batch, width, x.device, x.dtype)

            runs = []
            for run in _runs([(rows[i], channels) for i, (_, channels, _) in enumerate(footprints)]):
                whole = build(run)
                every = [i for i in run if footprints[i][2] == "all"]
                if len(every) == len(run):
                    runs.append(_Run(whole, None, whole))
                elif not every:
                    runs.append(_Run(None, whole, whole))
                else:
                    runs.append(_Run(build(every), build([i for i in run if footprints[i][2] == "last"]), whole))
            self._built[key] = runs
        return self._built[key]


def _make_component_prehook(group: _Group[_Affine], token: int) -> Hook:
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if token not in _ACTIVE.get():
            return None
        x = args[0]  # [batch, pos, channels]; each run returns a new tensor, so the caller's stays as it is
        for run in group.runs(x):
            x = run(x)
        return (x, *args[1:])

    return hook


def rms(h: torch.Tensor) -> torch.Tensor:
    """Root mean square over the hidden axis, kept for broadcasting: ``[..., 1]``."""
    return h.pow(2).mean(dim=-1, keepdim=True).add(1e-12).sqrt()


def _make_residual_hook(group: _Group[_Steer], token: int) -> Hook:
    def hook(module: nn.Module, args: tuple, output: object) -> object:
        if token not in _ACTIVE.get():
            return None
        h = untuple(output)  # [batch, pos, d_model]
        size = rms(h)  # of the layer's own output for every addition: additions do not see each other
        steered = h
        for run in group.runs(h):
            steered = run(steered, size)
        return _retuple(output, steered)

    return hook


def active_tokens() -> frozenset[int]:
    """The hook tokens active in the calling thread/context (see ``activated``)."""
    return _ACTIVE.get()


@contextmanager
def activated(register: Callable[[int], list[torch.utils.hooks.RemovableHandle]]) -> Iterator[None]:
    """Register hooks under a fresh token, activate it in this context, and always clean up.

    ``register(token)`` returns the handles of hooks that do nothing unless ``token in active_tokens()``.
    """
    token = next(_TOKENS)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    reset = _ACTIVE.set(_ACTIVE.get() | {token})
    try:
        handles.extend(register(token))
        yield
    finally:
        for handle in handles:
            handle.remove()
        _ACTIVE.reset(reset)


class EditPlan:
    """Interventions lowered to edits (validated) and grouped by the module each one hooks, for ``applied``.

    The groups keep their batch tensors, so a decode loop that enters ``applied`` at every step with one plan
    builds them once per generation; ``intervene`` makes a fresh plan for its block.
    """

    def __init__(self, adapter: Adapter, interventions: Sequence[Intervention]) -> None:
        component: dict[tuple[ComponentSite, int], list[ComponentEdit]] = defaultdict(list)
        residual: dict[int, list[tuple[ResidualAddition, torch.Tensor]]] = defaultdict(list)
        for intervention in interventions:
            for edit in compile_edits(adapter, intervention):
                if isinstance(edit, ComponentEdit):
                    component[(edit.site, edit.layer)].append(edit)
                else:
                    for layer, vector in edit.vectors.items():
                        residual[layer].append((edit, vector))
        self.component = {key: _Group(edits, _Affine) for key, edits in component.items()}
        self.residual = {layer: _Group(additions, _Steer) for layer, additions in residual.items()}
        # Edits of a call's last position only (steering) leave every earlier token of a prompt as it is without them.
        self.last_only = all(edit.positions == "last" for edits in component.values() for edit in edits) and all(
            edit.positions == "last" for additions in residual.values() for edit, _ in additions
        )


@contextmanager
def applied(bundle: ModelBundle, plan: EditPlan) -> Iterator[None]:
    """Apply a plan's edits to every forward pass run inside the block, in this thread/context only."""
    adapter = bundle.adapter

    def register(token: int) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for (site, layer), group in plan.component.items():
            module = adapter.attn_out(layer) if site == "attn_z" else adapter.mlp_out(layer)
            handles.append(module.register_forward_pre_hook(_make_component_prehook(group, token)))
        for layer, group in plan.residual.items():
            handles.append(adapter.layer(layer).register_forward_hook(_make_residual_hook(group, token)))
        return handles

    with activated(register):
        yield


@contextmanager
def intervene(bundle: ModelBundle, *interventions: Intervention) -> Iterator[None]:
    """Apply interventions to every forward pass run inside the block, in this thread/context only.

    Example:
        >>> with intervene(bundle, HeadAblation(((12, 3),))):
        ...     bundle.model(input_ids)
    """
    with applied(bundle, EditPlan(bundle.adapter, interventions)):
        yield


class Captured(dict):
    """Activations recorded by ``capture``: ``captured[(site, layer)]`` is a CPU tensor, at least float32.

    With ``positions`` given it is ``[batch, d]`` from the first forward pass; otherwise the
    per-call ``[batch, pos, d]`` tensors are concatenated along ``pos`` (prefill then decode steps).

    With ``capture(..., grad=True)`` the values stay in the autograd graph (on the model's device, in
    its dtype), and ``parts[(site, layer)]`` lists the tensors each forward call actually used, whole
    (every position), which is what ``torch.autograd.grad`` takes gradients with respect to.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[tuple[Site, int], list[torch.Tensor]] = {}


def _in_graph(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``x`` itself if autograd tracks it, else a fresh leaf that it will track (a frozen model's first site)."""
    if x.requires_grad or not torch.is_grad_enabled():
        return x, False
    return x.detach().requires_grad_(True), True


def _make_capture_hook(
    store: dict[tuple[Site, int], list[torch.Tensor]],
    key: tuple[Site, int],
    positions: torch.Tensor | None,
    token: int,
    kind: str,
    grad: bool,
) -> Hook:
    def record(x: torch.Tensor) -> None:
        if grad:
            store[key].append(x)  # whole and live: gradients are taken with respect to what the model used
            return
        if positions is not None:
            if store[key]:
                return
            x = x[torch.arange(x.shape[0], device=x.device), positions.to(x.device)]
        store[key].append(x.detach().to("cpu", torch.promote_types(x.dtype, torch.float32)))

    if kind == "post":

        def forward_hook(module: nn.Module, args: tuple, output: object) -> object:
            if token not in _ACTIVE.get():
                return None
            tensor = untuple(output)
            if grad:
                tensor, fresh = _in_graph(tensor)
                record(tensor)
                return _retuple(output, tensor) if fresh else None
            record(tensor)
            return None

        return forward_hook

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if token not in _ACTIVE.get():
            return None
        tensor = args[0] if args else kwargs["hidden_states"]
        if grad:
            tensor, fresh = _in_graph(tensor)
            record(tensor)
            if not fresh:
                return None
            return ((tensor, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": tensor})
        record(tensor)
        return None

    return pre_hook


@contextmanager
def capture(
    bundle: ModelBundle,
    sites: Sequence[Site],
    layers: Sequence[int] | None = None,
    positions: torch.Tensor | None = None,
    grad: bool = False,
) -> Iterator[Captured]:
    """Record activations at ``sites`` of ``layers`` (all layers by default).

    Args:
        positions: ``[batch]`` token index per row (e.g. the last prompt token); ``None`` keeps all.
        grad: keep the activations in the autograd graph (run the model with gradients enabled), so
            ``torch.autograd.grad(metric, captured.parts[key])`` gives the metric's gradient at every
            position of every call; values are then on the model's device and dtype.

    Yields:
        A ``Captured`` dict filled once the block exits. Captures see active interventions that
        were entered before them.
    """
    adapter = bundle.adapter
    layer_ids = [adapter.normalize_layer(layer) for layer in (layers if layers is not None else range(adapter.shape.n_layers))]
    store: dict[tuple[Site, int], list[torch.Tensor]] = defaultdict(list)
    result = Captured()

    def register(token: int) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for site in sites:
            for layer in layer_ids:
                key = (site, layer)
                if site == "resid_post":
                    hook = _make_capture_hook(store, key, positions, token, "post", grad)
                    handles.append(adapter.layer(layer).register_forward_hook(hook))
                    continue
                module = {
                    "resid_pre": adapter.layer,
                    "resid_mid": adapter.mlp_in_norm,
                    "attn_z": adapter.attn_out,
                    "mlp_post": adapter.mlp_out,
                }[site](layer)
                hook = _make_capture_hook(store, key, positions, token, "pre", grad)
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        return handles

    try:
        with activated(register):
            yield result
    finally:
        for key, parts in store.items():
            if grad:
                result.parts[key] = parts
                first = parts[0]
                result[key] = (
                    first[torch.arange(first.shape[0], device=first.device), positions.to(first.device)]
                    if positions is not None
                    else torch.cat(parts, dim=1)
                )
            else:
                result[key] = parts[0] if positions is not None else torch.cat(parts, dim=1)
