"""What each value a live page keeps between reruns was computed from.

The Knockout and Steer pages keep their recorded passes, meters, replies, readings, chance check and sweep in the
session, and reuse each while its key is unchanged. A key that misses an input shows a stale value once that input
changes (the Knockout meter's key once missed the seed that draws its random parts; the Steer sweep's, the
classroom-safe setting it decodes with), so every key is made here from one value of a page's inputs: a kept value is
keyed by every input except those its page's ``IGNORES`` says it does not depend on, and a new input is in every key
until someone declares otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from emo_core.baselines import Baseline
from emo_core.generation import GenerationSettings


def _key(inputs: object, value: str, ignores: Mapping[str, frozenset[str]]) -> tuple:
    """``value``'s key: its name and every input of ``inputs`` (a dataclass) it depends on, by name."""
    return (value, *((f.name, getattr(inputs, f.name)) for f in fields(inputs) if f.name not in ignores[value]))


# What each kept value of the Knockout page does not depend on; every other input is in its key.
KNOCKOUT_IGNORES: dict[str, frozenset[str]] = {
    "recording": frozenset({"parts", "mode", "layer", "settings", "judged"}),  # the baseline's own pass
    "meter": frozenset({"judged"}),  # the seed draws the random parts it compares with, so the decoding stays in
    "replies": frozenset({"layer", "judged"}),  # with their teacher-forced and layer-by-layer readings
    "chance": frozenset({"prompt", "layer", "settings"}),  # its own evaluation scenarios, its own decoding
}


@dataclass(frozen=True)
class KnockoutInputs:
    """Everything the Knockout page's kept values are computed from."""

    model: str
    prompt: str  # the templated prompt: scenario, baseline and emotion
    emotion: str
    baseline: Baseline
    parts: tuple[str, ...]  # the selection's tokens
    mode: str
    layer: int  # the sidebar's layer: where the meter reads, and the map
    settings: GenerationSettings  # decoding, the seed of the close-up's random parts included
    judged: bool  # whether the chance check also writes and judges replies

    def key(self, value: str) -> tuple:
        """The key of the kept ``value`` (a name of ``KNOCKOUT_IGNORES``)."""
        return _key(self, value, KNOCKOUT_IGNORES)


# What each kept value of the Steer page does not depend on.
STEER_IGNORES: dict[str, frozenset[str]] = {
    "replies": frozenset(),
    "sweep": frozenset({"strength"}),  # it runs its own strengths around the tuned one; it decodes classroom-safe or not
}


@dataclass(frozen=True)
class SteerInputs:
    """Everything the Steer page's kept values are computed from."""

    model: str
    user: str  # the scenario's user turn
    emotion: str
    method: str  # direction, circuit or asked
    strength: float | None
    settings: GenerationSettings

    def key(self, value: str) -> tuple:
        """The key of the kept ``value`` (a name of ``STEER_IGNORES``)."""
        return _key(self, value, STEER_IGNORES)
