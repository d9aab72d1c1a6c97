"""Re-run only the layers a change can reach: a one-row pass of a prompt, recorded layer by layer.

Switching parts off changes nothing below the lowest layer it touches, so the rows of an effect
meter (baseline, knocked out, matched control) or of a chance check (the baseline and 21 knockouts)
are identical up to there. ``record`` runs the prompt once, with its baseline edits, and keeps what
enters every decoder layer (the hidden state and the other arguments the model passed: attention
mask, rotary embeddings, ...). ``replay`` then starts at the lowest changed layer with one row per
change and stops at the highest layer read. On the built-in model a toggle of parts in layers 15-26
re-runs 14 layers for two rows instead of 30 layers for three.

The layers are called as the model calls them, with their own hooks, so interventions and captures
behave as in a full pass; tests compare the two on every supported architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from emo_core.generation import encode
from emo_core.interventions import Intervention, activated, active_tokens, capture, intervene, lowest_layer, untuple
from emo_core.models import ModelBundle

SITE = "resid_post"


@dataclass(frozen=True, eq=False)
class Recording:
    """One row's pass of a prompt: what entered each decoder layer, and the last layer's output at the last token."""

    edits: tuple[Intervention, ...]  # applied during the pass (e.g. the baseline's steering); a replay applies them to every row
    inputs: tuple[torch.Tensor, ...]  # per layer, [1, tokens, d_model] in the model's dtype
    arguments: tuple[tuple[tuple, dict], ...]  # per layer, the other positional and keyword arguments it was called with
    final: torch.Tensor  # [d_model], the last layer's output at the last token

    def last_token(self, layers: Sequence[int]) -> torch.Tensor:
        """``[len(layers), d_model]``, at least float32: the ``resid_post`` state of each layer at the prompt's last token."""
        after = torch.stack([self.inputs[layer + 1][0, -1] if layer + 1 < len(self.inputs) else self.final for layer in layers])
        return after.to(torch.promote_types(after.dtype, torch.float32))


def record(bundle: ModelBundle, prompt: str, edits: Sequence[Intervention] = ()) -> Recording:
    """One forward pass of the templated ``prompt`` with ``edits`` on its single row, kept for ``replay``."""
    adapter = bundle.adapter
    n_layers = adapter.shape.n_layers
    edits = tuple(dataclasses.replace(edit, rows=None) for edit in edits)
    calls: dict[int, tuple[tuple, dict]] = {}
    final: list[torch.Tensor] = []

    def register(token: int) -> list[torch.utils.hooks.RemovableHandle]:
        def entering(layer: int) -> Callable[[nn.Module, tuple, dict], None]:
            def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if token in active_tokens():
                    calls.setdefault(layer, (args, kwargs))

            return hook

        def leaving(module: nn.Module, args: tuple, output: object) -> None:
            if token in active_tokens() and not final:
                final.append(untuple(output)[0, -1])

        handles = [adapter.layer(layer).register_forward_pre_hook(entering(layer), with_kwargs=True) for layer in range(n_layers)]
        return [*handles, adapter.layer(n_layers - 1).register_forward_hook(leaving)]

    with torch.inference_mode(), intervene(bundle, *edits), activated(register):
        bundle.model(**encode(bundle, [prompt]), use_cache=False, logits_to_keep=1)
    inputs, arguments = [], []
    for layer in range(n_layers):
        args, kwargs = calls[layer]
        inputs.append(args[0] if args else kwargs["hidden_states"])
        arguments.append((args[1:], kwargs) if args else ((), {k: v for k, v in kwargs.items() if k != "hidden_states"}))
    return Recording(edits, tuple(inputs), tuple(arguments), final[0])


def replay(bundle: ModelBundle, recording: Recording, changes: Sequence[Intervention], rows: int, layers: Sequence[int]) -> torch.Tensor:
    """``[rows, len(layers), d_model]`` last-token states (at least float32) with ``changes`` on top of the recording's edits.

    ``changes`` carry their own ``rows`` (a change without rows applies to every row). Only the layers
    from the lowest one a change touches up to the highest one in ``layers`` run; below it every row
    is the recording.
    """
    adapter = bundle.adapter
    layers = [adapter.normalize_layer(layer) for layer in layers]
    states = recording.last_token(layers).expand(rows, -1, -1).clone()
    start = lowest_layer(adapter, changes)
    rerun = sorted({layer for layer in layers if start is not None and layer >= start})
    if not rerun:
        return states
    hidden = recording.inputs[start].expand(rows, -1, -1)
    last = torch.full((rows,), hidden.shape[1] - 1)
    with torch.inference_mode(), intervene(bundle, *recording.edits, *changes), capture(bundle, [SITE], rerun, last) as seen:
        for layer in range(start, rerun[-1] + 1):
            args, kwargs = recording.arguments[layer]
            hidden = untuple(adapter.layer(layer)(hidden, *args, **kwargs))
    for i, layer in enumerate(layers):
        if (SITE, layer) in seen:
            states[:, i] = seen[(SITE, layer)]
    return states
