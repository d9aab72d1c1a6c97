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
from typing import TYPE_CHECKING, Literal

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


def untuple(output: object) -> torch.Tensor:
    """The hidden-state tensor of a module output (tuple in some transformers versions, tensor in others)."""
    tensor = output[0] if isinstance(output, tuple) else output
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"expected a tensor output, got {type(tensor).__name__}")
    return tensor


def _retuple(original: object, tensor: torch.Tensor) -> object:
    return (tensor, *original[1:]) if isinstance(original, tuple) else tensor


def _mask(x: torch.Tensor, rows: Rows, positions: Positions) -> torch.Tensor:
    """Boolean ``[batch, pos, 1]`` selecting the rows and positions an edit applies to."""
    batch, seq = x.shape[0], x.shape[1]
    mask = torch.zeros(batch, seq, 1, dtype=torch.bool, device=x.device)
    row_index = slice(None) if rows is None else list(rows)
    if rows is not None and max(rows) >= batch:
        raise InvalidInterventionError(f"Row {max(rows)} does not exist in a batch of {batch}.")
    if positions == "all":
        mask[row_index] = True
    else:
        mask[row_index, -1] = True
    return mask


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


def lowest_layer(adapter: Adapter, interventions: Sequence[Intervention]) -> int | None:
    """The lowest decoder layer any of ``interventions`` touches (``None`` for none): nothing below it changes."""
    layers = [
        layer
        for intervention in interventions
        for edit in compile_edits(adapter, intervention)
        for layer in ([edit.layer] if isinstance(edit, ComponentEdit) else edit.vectors)
    ]
    return min(layers, default=None)


def _make_component_prehook(edits: list[ComponentEdit], token: int) -> Hook:
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if token not in _ACTIVE.get():
            return None
        x = args[0].clone()  # [batch, pos, channels]
        for edit in edits:
            index = torch.tensor(edit.channels, device=x.device)
            old = x[..., index]
            new = old * edit.scale
            if edit.add is not None:
                new = new + edit.add.to(device=x.device, dtype=x.dtype)
            x[..., index] = torch.where(_mask(x, edit.rows, edit.positions), new, old)
        return (x, *args[1:])

    return hook


def rms(h: torch.Tensor) -> torch.Tensor:
    """Root mean square over the hidden axis, kept for broadcasting: ``[..., 1]``."""
    return h.pow(2).mean(dim=-1, keepdim=True).add(1e-12).sqrt()


def _make_residual_hook(additions: list[tuple[ResidualAddition, torch.Tensor]], token: int) -> Hook:
    def hook(module: nn.Module, args: tuple, output: object) -> object:
        if token not in _ACTIVE.get():
            return None
        h = untuple(output)  # [batch, pos, d_model]
        steered = h
        for addition, vector in additions:
            size = rms(h) if addition.scale == "rms" else torch.ones_like(h[..., :1])
            delta = addition.alpha * size * vector.to(device=h.device, dtype=h.dtype)
            steered = torch.where(_mask(h, addition.rows, addition.positions), steered + delta, steered)
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


@contextmanager
def intervene(bundle: ModelBundle, *interventions: Intervention) -> Iterator[None]:
    """Apply interventions to every forward pass run inside the block, in this thread/context only.

    Example:
        >>> with intervene(bundle, HeadAblation(((12, 3),))):
        ...     bundle.model(input_ids)
    """
    adapter = bundle.adapter
    edits = [edit for intervention in interventions for edit in compile_edits(adapter, intervention)]

    def register(token: int) -> list[torch.utils.hooks.RemovableHandle]:
        component: dict[tuple[str, int], list[ComponentEdit]] = defaultdict(list)
        residual: dict[int, list[tuple[ResidualAddition, torch.Tensor]]] = defaultdict(list)
        for edit in edits:
            if isinstance(edit, ComponentEdit):
                component[(edit.site, edit.layer)].append(edit)
            else:
                for layer, vector in edit.vectors.items():
                    residual[layer].append((edit, vector))
        handles = []
        for (site, layer), group in component.items():
            module = adapter.attn_out(layer) if site == "attn_z" else adapter.mlp_out(layer)
            handles.append(module.register_forward_pre_hook(_make_component_prehook(group, token)))
        for layer, group in residual.items():
            handles.append(adapter.layer(layer).register_forward_hook(_make_residual_hook(group, token)))
        return handles

    with activated(register):
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
