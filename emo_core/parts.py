"""A part of the model: one attention head or MLP neuron, as one value, ``Component``.

Everything that names, ranks or switches off parts goes through here: the compact token (``L12H3``, ``L10N123``)
that the app keeps in the session and the URL, the range check, the one top-k over a score grid, the matched
random control, the one knockout builder (``knockout``), and the grammar the CLI uses to name parts
(``parse_spec``). Importing it does not import torch.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from emo_core.errors import LimitError

if TYPE_CHECKING:
    import torch

    from emo_core.circuit import Circuit
    from emo_core.interventions import AblationMode, Intervention, Rows

Kind = Literal["head", "neuron"]
KINDS: tuple[Kind, ...] = ("head", "neuron")
MAX_PARTS = 512  # parts switched off at once: enough for any circuit, small enough to carry in a link
_TOKEN = re.compile(r"L([0-9]{1,9})([HN])([0-9]{1,9})")  # ASCII digits, few enough for int() and any model
_LETTER: dict[str, Kind] = {"H": "head", "N": "neuron"}


@dataclass(frozen=True, order=True)
class Component:
    """One attention head or MLP neuron at a layer."""

    kind: Kind
    layer: int
    index: int

    @property
    def token(self) -> str:
        """Compact form used in URLs: ``L12H3`` or ``L10N123``."""
        return f"L{self.layer}{self.kind[0].upper()}{self.index}"

    @property
    def label(self) -> str:
        """Readable form: ``head 3 of layer 12``."""
        return f"{self.kind} {self.index} of layer {self.layer}"


def count(n: int, noun: str) -> str:
    """``1 head``, ``16 neurons``, ``1 random part``: a number with its noun, plural when English needs it."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def parse_token(token: str) -> Component:
    """The component named by ``token``; raises ``ValueError`` with a readable message otherwise."""
    match = _TOKEN.fullmatch(token.strip().upper())
    if match is None:
        raise ValueError(f"'{token[:40]}' is not a component; write L<layer>H<head> or L<layer>N<neuron>, e.g. L12H3.")
    layer, letter, index = match.groups()
    return Component(_LETTER[letter], int(layer), int(index))


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
    parts = [count(n, kind) for n, kind in ((heads, "head"), (len(components) - heads, "neuron")) if n]
    return f"{' and '.join(parts)} in {_layer_span([c.layer for c in components])}"


# --- Ranking: the one top-k ------------------------------------------------------------------------------------------


def top_indices(scores: torch.Tensor, k: int | None = None, per_layer: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` highest entries of a ``[L, width]`` score grid, best first, as ``(values, layers, indices)``.

    Over the whole grid by default, or the ``k`` best of every layer (layer by layer) with ``per_layer``. ``-inf`` entries
    (parts a ranking excludes) are never returned; ``k=None`` returns every other entry. Equal scores keep the grid's
    order (lower layer, then lower index, first), as the ranked tables list them, so a top k is the same set every time.
    """
    width = scores.shape[1]
    if per_layer:
        import torch

        values, index = scores.sort(dim=1, descending=True, stable=True)
        values, index = values[:, : min(k or width, width)], index[:, : min(k or width, width)]
        layers = torch.arange(scores.shape[0], device=index.device)[:, None].expand_as(index)
        values, layers, index = values.flatten(), layers.flatten(), index.flatten()
        keep = values.isfinite()
        return values[keep], layers[keep], index[keep]
    finite = int(scores.isfinite().sum())
    values, flat = scores.flatten().sort(descending=True, stable=True)
    n = finite if k is None else min(k, finite)
    return values[:n], flat[:n] // width, flat[:n] % width


def top_parts(scores: torch.Tensor, kind: Kind, k: int | None = None) -> list[tuple[Component, float]]:
    """The ``k`` best heads or neurons of a ``[L, width]`` score grid with their scores, best first (``top_indices``)."""
    values, layers, index = top_indices(scores, k)
    return [(Component(kind, layer, i), value) for value, layer, i in zip(values.tolist(), layers.tolist(), index.tolist(), strict=True)]


def matched_random(components: Sequence[Component], shape: Mapping[str, int], rng: random.Random) -> list[Component]:
    """As many random heads and neurons as ``components`` has in each layer, none of them: the matched control."""
    chosen = set(components)
    drawn: list[Component] = []
    for kind, width in (("head", shape["n_heads"]), ("neuron", shape["d_mlp"])):
        for layer in sorted({c.layer for c in components if c.kind == kind}):
            n = sum(c.layer == layer and c.kind == kind for c in components)
            pool = [Component(kind, layer, index) for index in range(width) if Component(kind, layer, index) not in chosen]
            drawn.extend(rng.sample(pool, min(n, len(pool))))
    return drawn


# --- Switching parts off: the one knockout builder ------------------------------------------------------------------


@dataclass(frozen=True)
class NeutralMeans:
    """Every part's mean output over emotion-free prompts, per layer: what mean ablation sets a part to.

    ``heads`` is ``[L, n_heads * head_dim]`` (the o_proj input), ``neurons`` ``[L, d_mlp]`` (the down_proj input).
    """

    heads: torch.Tensor
    neurons: torch.Tensor

    def of(self, kind: Kind) -> torch.Tensor:
        """The means of one kind of part."""
        return self.heads if kind == "head" else self.neurons


def knockout(
    parts: Sequence[Component], mode: AblationMode = "zero", means: NeutralMeans | None = None, rows: Rows = None
) -> list[Intervention]:
    """The interventions that switch ``parts`` off: zero ablation, or mean ablation with ``means``, on ``rows`` of a batch
    (every row when ``None``). Heads come first, then neurons, each in the order given.

    Raises:
        LimitError: more than ``MAX_PARTS`` parts.
        ValueError: mean ablation without ``means``.
    """
    from emo_core.interventions import HeadAblation, NeuronAblation  # here, so naming parts does not import torch

    if len(parts) > MAX_PARTS:
        raise LimitError(f"{len(parts):,} parts cannot be switched off at once; the limit is {MAX_PARTS}, so pick fewer.")
    if mode == "mean" and means is None:
        raise ValueError("Mean ablation needs the parts' mean outputs over emotion-free prompts (the cache's means).")
    heads = tuple((c.layer, c.index) for c in parts if c.kind == "head")
    neurons = tuple((c.layer, c.index) for c in parts if c.kind == "neuron")
    mean = mode == "mean"
    edits: list[Intervention] = []
    if heads:
        edits.append(HeadAblation(heads, mode, dict(enumerate(means.heads)) if mean else None, rows))
    if neurons:
        edits.append(NeuronAblation(neurons, mode, dict(enumerate(means.neurons)) if mean else None, rows))
    return edits


# --- Naming parts in a command line ---------------------------------------------------------------------------------

Ranking = Literal["causal", "circuit"]
SPEC_FORMS = "L12H3, L10N123, causal-heads:K, causal-neurons:K or circuit"
_RANKED = re.compile(r"causal-(head|neuron)s:([0-9]{1,4})")


@dataclass(frozen=True)
class Ranked:
    """Parts named by a ranking rather than one by one: the top ``k`` heads or neurons of the emotion's causal ranking
    (``causal-neurons:16``), or the emotion's whole circuit (``circuit``, ``kind`` and ``k`` unused)."""

    ranking: Ranking
    kind: Kind = "head"
    k: int = 0


Spec = Component | Ranked


def parse_spec(spec: str) -> Spec:
    """One part spec of the CLI (``SPEC_FORMS``); raises ``ValueError`` with the forms otherwise."""
    text = spec.strip()
    if text.lower() == "circuit":
        return Ranked("circuit")
    if match := _RANKED.fullmatch(text.lower()):
        if int(match[2]) < 1:
            raise ValueError(f"'{text[:40]}' names no parts; K must be at least 1.")
        return Ranked("causal", match[1], int(match[2]))  # type: ignore[arg-type]
    try:
        return parse_token(text)
    except ValueError:
        raise ValueError(f"Cannot read the parts '{text[:40]}'; use {SPEC_FORMS}.") from None


def resolve(specs: Sequence[Spec], ranked: Callable[[Ranked], Sequence[Component]]) -> list[Component]:
    """The parts ``specs`` name, in order without repeats; ``ranked`` looks up the parts of a ``Ranked`` spec."""
    found: dict[Component, None] = {}
    for spec in specs:
        for component in ranked(spec) if isinstance(spec, Ranked) else (spec,):
            found[component] = None
    return list(found)
