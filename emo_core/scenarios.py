"""Scenario skeletons (our own, in the paper's format) and the prompts built from them.

A skeleton is a neutral first-person scenario plus a positive, a neutral and a negative one-sentence
outcome. The ``train`` split is what directions, circuits and strengths are fitted and tuned on;
the ``eval`` split is only ever used to measure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emo_core.errors import EmoCoreError
from emo_core.limits import check_text

EMOTIONS: tuple[str, ...] = ("anger", "sadness", "happiness", "fear", "surprise", "disgust")
VALENCES: tuple[str, ...] = ("positive", "neutral", "negative")
THEMES: tuple[str, ...] = ("work", "school", "relationships", "shopping", "public_services", "health", "housing", "travel")
Split = Literal["train", "eval"]

DATASET_DIR = Path(__file__).parent / "datasets"
EMOTION_SYSTEM = "Always reply in {emotion}.\nKeep the reply to at most two sentences."
NEUTRAL_SYSTEM = "Keep the reply to at most two sentences."


@dataclass(frozen=True)
class Skeleton:
    """One scenario with its three outcomes."""

    skeleton_id: str
    theme: str
    scenario: str
    event: Mapping[str, str]

    def user_message(self, valence: str) -> str:
        """The user turn: scenario and outcome on two lines, as in the paper."""
        return f"{self.scenario}\n{self.event[valence]}"


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of a prompt set: which skeleton, outcome and (requested) emotion, and its messages."""

    skeleton_id: str
    theme: str
    valence: str
    emotion: str | None
    system: str
    user: str

    @property
    def key(self) -> str:
        return f"{self.skeleton_id}__{self.valence}__{self.emotion or 'none'}"


def _parse_skeleton(record: object, where: str) -> Skeleton:
    if not isinstance(record, dict):
        raise EmoCoreError(f"{where}: expected a JSON object with skeleton_id, theme, scenario and event.")
    missing = [key for key in ("skeleton_id", "theme", "scenario", "event") if key not in record]
    if missing:
        raise EmoCoreError(f"{where}: missing field(s) {', '.join(missing)}.")
    not_text = [key for key in ("skeleton_id", "theme", "scenario") if not isinstance(record[key], str) or not record[key].strip()]
    if not_text:
        raise EmoCoreError(f"{where}: {', '.join(not_text)} must be non-empty text.")
    event = record["event"]
    if not isinstance(event, dict) or any(not isinstance(event.get(v), str) or not event[v].strip() for v in VALENCES):
        raise EmoCoreError(f"{where}: 'event' needs non-empty 'positive', 'neutral' and 'negative' sentences.")
    skeleton = Skeleton(record["skeleton_id"], record["theme"], record["scenario"], {v: event[v] for v in VALENCES})
    for valence in VALENCES:
        check_text(skeleton.user_message(valence), f"{where}: the scenario with its {valence} outcome")
    return skeleton


def read_skeletons(path: Path) -> list[Skeleton]:
    """Skeletons from a JSON Lines file in our format; bad lines raise an error naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EmoCoreError(f"Could not read scenarios from {path}: {error}.") from error
    skeletons = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # also numbers of thousands of digits, and brackets nested thousands deep
            raise EmoCoreError(f"{path}, line {number}: not valid JSON.") from None
        skeletons.append(_parse_skeleton(record, f"{path}, line {number}"))
    ids = [s.skeleton_id for s in skeletons]
    if len(set(ids)) != len(ids):
        raise EmoCoreError(f"{path}: skeleton_id values must be unique.")
    if not skeletons:
        raise EmoCoreError(f"{path} holds no scenarios.")
    return skeletons


def load_skeletons(split: Split) -> list[Skeleton]:
    """The shipped ``train`` or ``eval`` skeletons."""
    return read_skeletons(DATASET_DIR / f"scenarios_{split}.jsonl")


def training_skeletons(n: int | None = None) -> list[Skeleton]:
    """The first ``n`` training skeletons (all with ``None``): what a build reads, never the ``eval`` split."""
    return load_skeletons("train")[:n]


def emotion_prompts(skeletons: Iterable[Skeleton], emotions: Sequence[str] = EMOTIONS) -> list[PromptSpec]:
    """One emotion-eliciting prompt per (skeleton, valence, emotion)."""
    return [
        PromptSpec(s.skeleton_id, s.theme, valence, emotion, EMOTION_SYSTEM.format(emotion=emotion), s.user_message(valence))
        for s in skeletons
        for valence in VALENCES
        for emotion in emotions
    ]


def neutral_prompts(skeletons: Iterable[Skeleton]) -> list[PromptSpec]:
    """One emotion-free prompt per (skeleton, valence), used when steering."""
    return [
        PromptSpec(s.skeleton_id, s.theme, valence, None, NEUTRAL_SYSTEM, s.user_message(valence))
        for s in skeletons
        for valence in VALENCES
    ]


def spread(prompts: Sequence[PromptSpec], n: int) -> list[PromptSpec]:
    """``n`` prompts taken at even steps through ``prompts``, so every theme and valence is represented."""
    return list(prompts[:: max(1, len(prompts) // n)][:n])


def prompt_set_hash(prompts: Iterable[PromptSpec]) -> str:
    """A short fingerprint of a prompt set, stored in caches so stale ones are detected."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps([p.key, p.system, p.user]).encode())
    return digest.hexdigest()[:16]
