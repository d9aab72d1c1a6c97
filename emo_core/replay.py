"""Re-run only the layers a change can reach: a one-row pass, recorded layer by layer, call by call.

Switching parts off changes nothing below the lowest layer it touches, so the rows of an effect
meter (baseline, knocked out, matched control), of a chance check (the baseline and 21 knockouts)
or of a knockout curve (a teacher-forced baseline reply and the hundred knockouts read on it) are
identical up to there. ``record`` runs the prompt once, with its baseline edits, and keeps what
enters every decoder layer (the hidden state and the other arguments the model passed: attention
mask, rotary embeddings, ...). ``replay`` then starts at the lowest changed layer with one row per
change and stops at the highest layer read. On the built-in model a toggle of parts in layers 15-26
re-runs 14 layers for two rows instead of 30 layers for three.

A pass may be several calls over one KV cache (a prompt, then a reply fed after it: ``record_calls``);
a replay runs them in order over a fresh cache of its own, which holds only the layers it re-runs.

The layers are called as the model calls them, with their own hooks, so interventions and captures
behave as in a full pass; tests compare the two on every supported architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Cache, DynamicCache

from emo_core.generation import encode
from emo_core.interventions import Intervention, activated, active_tokens, capture, intervene, lowest_layer, untuple
from emo_core.models import ModelBundle

SITE = "resid_post"


@dataclass(frozen=True, eq=False)
class Call:
    """One forward call of a recorded pass: its edits, and what entered and left each decoder layer."""

    edits: tuple[Intervention, ...]  # applied during the call; a replay applies them to every row
    inputs: tuple[torch.Tensor, ...]  # per layer, [1, tokens, d_model] in the model's dtype
    arguments: tuple[tuple[tuple, dict], ...]  # per layer, the other positional and keyword arguments it was called with
    output: torch.Tensor  # [1, tokens, d_model], the last layer's output

    def states(self, layers: Sequence[int]) -> torch.Tensor:
        """``[1, tokens, len(layers), d_model]``, at least float32: the ``resid_post`` state of each layer at every token."""
        after = torch.stack([self.inputs[layer + 1] if layer + 1 < len(self.inputs) else self.output for layer in layers], dim=2)
        return after.to(torch.promote_types(after.dtype, torch.float32))


@dataclass(frozen=True, eq=False)
class Recording:
    """One row's pass: its calls in order (a prompt alone is one call)."""

    calls: tuple[Call, ...]

    def last_token(self, layers: Sequence[int]) -> torch.Tensor:
        """``[len(layers), d_model]``, at least float32: the ``resid_post`` state of each layer at the last token."""
        return self.calls[-1].states(layers)[0, -1]


def _record_call(bundle: ModelBundle, edits: tuple[Intervention, ...], inputs: dict, cache: Cache | None) -> tuple[Call, Cache | None]:
    """One call of a recorded pass, and the KV cache it leaves."""
    adapter = bundle.adapter
    n_layers = adapter.shape.n_layers
    entered: dict[int, tuple[tuple, dict]] = {}
    left: list[torch.Tensor] = []

    def register(token: int) -> list[torch.utils.hooks.RemovableHandle]:
        def entering(layer: int) -> Callable[[nn.Module, tuple, dict], None]:
            def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if token in active_tokens():
                    entered.setdefault(layer, (args, kwargs))

            return hook

        def leaving(module: nn.Module, args: tuple, output: object) -> None:
            if token in active_tokens() and not left:
                left.append(untuple(output))

        handles = [adapter.layer(layer).register_forward_pre_hook(entering(layer), with_kwargs=True) for layer in range(n_layers)]
        return [*handles, adapter.layer(n_layers - 1).register_forward_hook(leaving)]

    with torch.inference_mode(), intervene(bundle, *edits), activated(register):
        cache = bundle.model(**inputs, cache=cache, logits_to_keep=1).cache
    states, arguments = [], []
    for layer in range(n_layers):
        args, kwargs = entered[layer]
        states.append(args[0] if args else kwargs["hidden_states"])
        arguments.append((args[1:], kwargs) if args else ((), {k: v for k, v in kwargs.items() if k != "hidden_states"}))
    return Call(edits, tuple(states), tuple(arguments), left[0]), cache


def record_calls(bundle: ModelBundle, calls: Sequence[tuple[Sequence[Intervention], dict]]) -> Recording:
    """Run one row's ``(edits, model inputs)`` calls in order, each over the KV cache the previous ones left, and keep them for ``replay``.

    Edits lose their ``rows``: a recording has one row, and a replay applies them to each of its rows.
    """
    recorded = []
    cache = None
    for edits, inputs in calls:
        call, cache = _record_call(bundle, tuple(dataclasses.replace(edit, rows=None) for edit in edits), inputs, cache)
        recorded.append(call)
    return Recording(tuple(recorded))


def record(bundle: ModelBundle, prompt: str, edits: Sequence[Intervention] = ()) -> Recording:
    """One forward pass of the templated ``prompt`` with ``edits`` on its single row, kept for ``replay``."""
    return record_calls(bundle, [(edits, dict(encode(bundle, [prompt]), use_cache=False))])


def _fresh_cache(value: object, cache: Cache) -> object:
    return cache if isinstance(value, Cache) else value


def replay_calls(
    bundle: ModelBundle, recording: Recording, changes: Sequence[Sequence[Intervention]], rows: int, layers: Sequence[int]
) -> list[torch.Tensor]:
    """Per call, ``[rows, tokens, len(layers), d_model]`` states (at least float32) with ``changes[call]`` on top of its edits.

    ``changes`` carry their own ``rows`` (a change without rows applies to every row). Only the layers
    from the lowest one a change touches up to the highest one in ``layers`` run, over a cache of the
    replay's own; below it every row is the recording.
    """
    adapter = bundle.adapter
    layers = [adapter.normalize_layer(layer) for layer in layers]
    out = [call.states(layers).expand(rows, -1, -1, -1).clone() for call in recording.calls]
    start = lowest_layer(adapter, [change for call_changes in changes for change in call_changes])
    rerun = sorted({layer for layer in layers if start is not None and layer >= start})
    if not rerun:
        return out
    cache = DynamicCache(config=bundle.model.config)
    for call, call_changes, states in zip(recording.calls, changes, out, strict=True):
        hidden = call.inputs[start].expand(rows, -1, -1)
        with torch.inference_mode(), intervene(bundle, *call.edits, *call_changes), capture(bundle, [SITE], rerun) as seen:
            for layer in range(start, rerun[-1] + 1):
                args, kwargs = call.arguments[layer]
                args = tuple(_fresh_cache(value, cache) for value in args)
                kwargs = {key: _fresh_cache(value, cache) for key, value in kwargs.items()}
                hidden = untuple(adapter.layer(layer)(hidden, *args, **kwargs))
        for i, layer in enumerate(layers):
            if (SITE, layer) in seen:
                states[:, :, i] = seen[(SITE, layer)]
    return out


def replay(bundle: ModelBundle, recording: Recording, changes: Sequence[Intervention], rows: int, layers: Sequence[int]) -> torch.Tensor:
    """``[rows, len(layers), d_model]`` last-token states (at least float32) of a one-call recording with ``changes`` on top."""
    return replay_calls(bundle, recording, [changes], rows, layers)[-1][:, -1]
