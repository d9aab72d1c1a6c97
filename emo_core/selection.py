"""Heads and neurons as one value: a compact token (``L12H3``, ``L10N123``), a label, a range check, and its intervention.

The app keeps a selection as tokens in the session and the URL; the CLI, the evaluation and the knockout
view turn the same values into ablations, so a head is named one way everywhere.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from emo_core.errors import LimitError

if TYPE_CHECKING:
    import torch

    from emo_core.circuit import Circuit
    from emo_core.interventions import AblationMode, Intervention, Rows

Kind = Literal["head", "neuron"]
MAX_PARTS = 512  # parts switched off at once: enough for any circuit, small enough to carry in a link
_TOKEN = re.compile(r"L([0-9]{1,9})([HN])([0-9]{1,9})")  # ASCII digits, few enough for int() and any model
_LETTER: dict[str, str] = {"head": "H", "neuron": "N"}


@dataclass(frozen=True, order=True)
class Component:
    """One attention head or MLP neuron at a layer."""

    kind: Kind
    layer: int
    index: int

    @property
    def token(self) -> str:
        """Compact form used in URLs: ``L12H3`` or ``L10N123``."""
        return f"L{self.layer}{_LETTER[self.kind]}{self.index}"

    @property
    def label(self) -> str:
        """Readable form: ``head 3 of layer 12``."""
        return f"{self.kind} {self.index} of layer {self.layer}"


def parse_token(token: str) -> Component:
    """The component named by ``token``; raises ``ValueError`` with a readable message otherwise."""
    match = _TOKEN.fullmatch(token.strip().upper())
    if match is None:
        raise ValueError(f"'{token[:40]}' is not a component; write L<layer>H<head> or L<layer>N<neuron>, e.g. L12H3.")
    layer, letter, index = match.groups()
    return Component("head" if letter == "H" else "neuron", int(layer), int(index))


def parse_tokens(tokens: Iterable[str]) -> tuple[list[Component], list[str]]:
    """Components parsed from tokens (comma lists allowed), in order without repeats, and the tokens that did not parse."""
    found: dict[Component, None] = {}  # ordered and O(1) to check: a link may carry thousands of tokens
    bad: list[str] = []
    for raw in tokens:
        for token in filter(None, (part.strip() for part in raw.split(","))):
            try:
                component = parse_token(token)
            except ValueError:
                bad.append(token)
                continue
            found[component] = None
    return list(found), bad


def out_of_range(component: Component, n_layers: int, n_heads: int, d_mlp: int) -> str | None:
    """Why ``component`` does not exist in a model of this size, or ``None`` if it does."""
    width = n_heads if component.kind == "head" else d_mlp
    if not 0 <= component.layer < n_layers:
        return f"{component.token}: layer {component.layer} does not exist (layers 0 to {n_layers - 1})."
    if not 0 <= component.index < width:
        return f"{component.token}: {component.kind} {component.index} does not exist (0 to {width - 1} per layer)."
    return None


def from_pairs(pairs: Iterable[tuple[int, int]], kind: Kind) -> list[Component]:
    """Components from ``(layer, index)`` pairs, e.g. the rows of a top-heads table."""
    return [Component(kind, int(layer), int(index)) for layer, index in pairs]


def circuit_components(circuit: Circuit) -> list[Component]:
    """The heads, then the neurons, of an emotion's circuit."""
    return [Component("head", layer, index) for layer, index, _ in circuit.heads] + [
        Component("neuron", layer, index) for layer, index, _ in circuit.neurons
    ]


def _layer_span(layers: Sequence[int]) -> str:
    low, high = min(layers), max(layers)
    return f"layer {low}" if low == high else f"layers {low}–{high}"


def describe(components: Sequence[Component]) -> str:
    """A short summary: ``12 heads and 96 neurons in layers 15–26`` (``nothing`` when empty)."""
    if not components:
        return "nothing"
    heads = sum(c.kind == "head" for c in components)
    neurons = len(components) - heads
    parts = [f"{n} {kind}{'s' if n != 1 else ''}" for n, kind in ((heads, "head"), (neurons, "neuron")) if n]
    return f"{' and '.join(parts)} in {_layer_span([c.layer for c in components])}"


def ablations(
    components: Sequence[Component],
    mode: AblationMode = "zero",
    head_means: Mapping[int, torch.Tensor] | None = None,
    neuron_means: Mapping[int, torch.Tensor] | None = None,
    rows: Rows = None,
) -> list[Intervention]:
    """The interventions that switch ``components`` off (zero, or mean ablation with the cache's neutral means).

    Raises:
        LimitError: more than ``MAX_PARTS`` components.
    """
    from emo_core.interventions import HeadAblation, NeuronAblation  # here, so naming parts does not import torch

    if len(components) > MAX_PARTS:
        raise LimitError(f"{len(components):,} parts cannot be switched off at once; the limit is {MAX_PARTS}, so pick fewer.")
    heads = tuple((c.layer, c.index) for c in components if c.kind == "head")
    neurons = tuple((c.layer, c.index) for c in components if c.kind == "neuron")
    edits: list[Intervention] = []
    if heads:
        edits.append(HeadAblation(heads, mode, head_means, rows))
    if neurons:
        edits.append(NeuronAblation(neurons, mode, neuron_means, rows))
    return edits


def matched_random(components: Sequence[Component], shape: dict[str, int], rng: random.Random) -> list[Component]:
    """As many random heads and neurons as ``components`` has in each layer, none of them: the matched control."""
    chosen = set(components)
    drawn: list[Component] = []
    for kind, width in (("head", shape["n_heads"]), ("neuron", shape["d_mlp"])):
        for layer in sorted({c.layer for c in components if c.kind == kind}):
            count = sum(c.layer == layer and c.kind == kind for c in components)
            pool = [Component(kind, layer, index) for index in range(width) if Component(kind, layer, index) not in chosen]
            drawn.extend(rng.sample(pool, min(count, len(pool))))
    return drawn


def top_components(scores: torch.Tensor, kind: Kind, k: int) -> list[Component]:
    """The ``k`` highest-scoring heads or neurons of a ``[L, width]`` score grid, best first."""
    width = scores.shape[1]
    return [Component(kind, int(i) // width, int(i) % width) for i in scores.flatten().topk(k).indices]
