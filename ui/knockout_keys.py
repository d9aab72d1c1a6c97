"""What each value the Knockout page keeps between reruns was computed from.

The page keeps its recorded baseline pass, the effect meter, the close-up replies, their teacher-forced and layer-by-layer
readings and the chance check in the session, and reuses each while its key is unchanged. A key that misses an input
shows a stale value once that input changes (the meter's key once missed the seed that draws its random parts), so every
key is made here from one ``KnockoutInputs``: a kept value is keyed by every input except those ``IGNORES`` says it does
not depend on, and a new input is in every key until someone declares otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from emo_core.baselines import Baseline
from emo_core.generation import GenerationSettings

# What each kept value does not depend on; every other input is in its key.
IGNORES: dict[str, frozenset[str]] = {
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
        """The key of the kept ``value`` (a name of ``IGNORES``): every input it depends on, by name."""
        return (value, *((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in IGNORES[value]))
