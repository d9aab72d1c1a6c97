"""A baseline: how a reply is made emotional before its emotion is measured or parts are switched off.

A knockout can only weaken an emotion the reply has, and the built-in model ignores a request for an emotion, so
every knockout, reading and steering figure names its baseline:

- *plain*: nothing asked (the emotion-free system prompt);
- *asked*: the emotion request in the system prompt ("Always reply in anger."); the project's one name for it;
- *steered*: the emotion-free prompt, steered toward the emotion along its direction or through its circuit, at the
  tuned strength or a given one;
- *continued*: the reply already begins with an emotional sentence (its *opening*) and the model writes on, so only
  what it writes after the opening is read.

Importing this module does not import torch: the app's first page reads baseline names without loading a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from emo_core.limits import check_strength
from emo_core.scenarios import EMOTION_SYSTEM, EMOTIONS, NEUTRAL_SYSTEM, PromptSpec

if TYPE_CHECKING:
    from emo_core.interventions import Intervention
    from emo_core.models import ModelBundle
    from emo_core.parts import Component
    from emo_core.scoring import Row
    from emo_core.steering import SteeringKit

BaselineKind = Literal["plain", "asked", "steered", "continued"]
BASELINE_KINDS: tuple[BaselineKind, ...] = ("plain", "asked", "steered", "continued")
LIVE_KINDS: tuple[BaselineKind, ...] = ("steered", "asked", "plain")  # what the live pages offer (continued needs an opening)
CAUSAL_KINDS: tuple[BaselineKind, ...] = ("steered", "asked", "continued")  # what causal rankings and knockout curves measure on
SteeringMethod = Literal["direction", "circuit"]
METHODS: tuple[SteeringMethod, ...] = ("direction", "circuit")


@dataclass(frozen=True)
class Baseline:
    """One way of making a reply emotional; ``method`` and ``strength`` matter only for *steered* (``None``: the tuned
    strength)."""

    kind: BaselineKind = "steered"
    method: SteeringMethod = "direction"
    strength: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in BASELINE_KINDS:
            raise ValueError(f"Unknown baseline '{str(self.kind)[:40]}'; choose one of {', '.join(BASELINE_KINDS)}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown steering method '{str(self.method)[:40]}'; choose one of {', '.join(METHODS)}.")
        if self.strength is not None:
            check_strength(self.strength)

    @property
    def key(self) -> str:
        """How reports name it: ``plain``, ``asked``, ``continued``, or the steering method (``direction``, ``circuit``)."""
        return self.method if self.kind == "steered" else self.kind

    def system(self, emotion: str | None = None) -> str:
        """The system prompt: the request for ``emotion`` for *asked*, the emotion-free one otherwise."""
        if self.kind != "asked":
            return NEUTRAL_SYSTEM
        if emotion not in EMOTIONS:
            raise ValueError(f"An asked baseline needs one of the emotions {', '.join(EMOTIONS)}, not '{str(emotion)[:40]}'.")
        return EMOTION_SYSTEM.format(emotion=emotion)

    def prompt(self, bundle: ModelBundle, user: str, emotion: str | None = None, opening: str | None = None) -> str:
        """The templated prompt for the user turn ``user`` (``emotion`` is needed only by *asked*); a *continued*
        baseline's ends with its ``opening`` sentence."""
        from emo_core.generation import chat_prompt

        text = chat_prompt(bundle, user, self.system(emotion))
        if self.kind != "continued":
            return text
        if not opening:
            raise ValueError("A continued baseline needs the opening sentence its reply begins with.")
        return text + opening

    def edits(self, kit: SteeringKit, emotion: str) -> list[Intervention]:
        """The steering it applies toward ``emotion`` (none unless *steered*)."""
        return kit.tuned(self.method, emotion, self.strength) if self.kind == "steered" else []

    def pushes(self, kit: SteeringKit, emotion: str) -> frozenset[Component]:
        """The heads and neurons its steering turns up toward ``emotion``: the steering circuit's parts for circuit steering,
        none otherwise. Switching these off would only undo the push that made the reply emotional, so a knockout on this
        baseline leaves them out (``prepared.candidate_parts``, ``Results.ranked_parts``)."""
        from emo_core.parts import circuit_components

        if self.kind != "steered" or self.method != "circuit" or emotion not in kit.circuits:
            return frozenset()
        return frozenset(circuit_components(kit.circuits[emotion]))

    def describe(self, kit: SteeringKit | None = None, emotion: str | None = None) -> str:
        """In words, for a page or a report: "steered along its direction at 1.5 (1.5x the tuned strength)"."""
        if self.kind == "plain":
            return "plain (nothing asked)"
        if self.kind == "asked":
            return "asked for the emotion in the prompt"
        if self.kind == "continued":
            return "continuing an emotional opening"
        how = "along its direction" if self.method == "direction" else "through its circuit"
        if self.strength is None:
            return f"steered {how} at the tuned strength"
        text = f"steered {how} at strength {self.strength:.2f}"
        if kit is not None and emotion is not None:
            tuned = kit.settings(self.method, emotion)["strength"]
            text += f" ({self.strength / tuned:.2g}x the tuned {tuned:.2f})" if tuned else ""
        return text


def baseline_rows(
    baseline: Baseline,
    kit: SteeringKit,
    prompts: Sequence[PromptSpec],
    emotions: Sequence[str] = EMOTIONS,
    openings: Mapping[str, Sequence[str]] | None = None,
) -> list[Row]:
    """One row per (emotion, prompt) of ``baseline`` on emotion-free ``prompts``, emotion by emotion (row ``e * len(prompts) + p``).

    A *continued* baseline cycles through ``openings[emotion]``. Each row is tagged with the baseline's kind and its
    prompt's valence and key, and carries its scenario for the fluency check.
    """
    from emo_core.scoring import Row

    rows = []
    for emotion in emotions:
        if baseline.kind == "continued" and not (openings or {}).get(emotion):
            raise ValueError(f"The continued baseline needs opening sentences for {emotion}.")
        edits = tuple(baseline.edits(kit, emotion))
        for i, p in enumerate(prompts):
            opening = openings[emotion][i % len(openings[emotion])] if baseline.kind == "continued" else None
            text = baseline.prompt(kit.bundle, p.user, emotion, opening)
            tags = (("baseline", baseline.kind), ("valence", p.valence), ("prompt", p.key))
            rows.append(Row(text, emotion, edits, tags, p.user))
    return rows
