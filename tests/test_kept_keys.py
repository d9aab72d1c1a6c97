"""Every value a live page keeps changes its key when any input it depends on changes (issue 22): the test walks the
inputs themselves, so an input added to ``KnockoutInputs`` or ``SteerInputs`` without a changed value here fails, and a
kept value ignores only the inputs its page's ``IGNORES`` names."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from emo_core.baselines import Baseline
from emo_core.scoring import SCORING_SETTINGS
from ui.kept_keys import KNOCKOUT_IGNORES, STEER_IGNORES, KnockoutInputs, SteerInputs

BASE = KnockoutInputs(
    model="SmolLM2-135M-Instruct",
    prompt="<|im_start|>user\nMy train was cancelled.<|im_end|>\n",
    emotion="fear",
    baseline=Baseline("steered", "direction", 1.5),
    parts=("L20H3", "L14N721"),
    mode="mean",
    layer=15,
    settings=SCORING_SETTINGS,
    judged=False,
)
CHANGED = {  # one other value per input
    "model": "another-model",
    "prompt": "<|im_start|>user\nMy train was early.<|im_end|>\n",
    "emotion": "anger",
    "baseline": Baseline("steered", "direction", 2.0),
    "parts": ("L20H3",),
    "mode": "zero",
    "layer": 16,
    "settings": replace(SCORING_SETTINGS, seed=1),
    "judged": True,
}


STEER = SteerInputs("SmolLM2-135M-Instruct", "My train was cancelled.", "fear", "direction", 1.5, SCORING_SETTINGS)
STEER_CHANGED = {
    "model": "another-model",
    "user": "My train was early.",
    "emotion": "anger",
    "method": "circuit",
    "strength": 2.0,
    "settings": replace(SCORING_SETTINGS, classroom_safe=not SCORING_SETTINGS.classroom_safe),
}
PAGES = [(BASE, CHANGED, KNOCKOUT_IGNORES), (STEER, STEER_CHANGED, STEER_IGNORES)]


@pytest.mark.parametrize(("inputs", "changed", "ignores"), PAGES)
def test_every_input_has_a_changed_value_to_try(inputs: object, changed: dict, ignores: dict) -> None:
    assert set(changed) == {f.name for f in fields(inputs)}
    assert all(set(ignored) <= set(changed) for ignored in ignores.values())


@pytest.mark.parametrize(("inputs", "changed", "ignores"), PAGES)
def test_a_kept_value_is_recomputed_exactly_when_an_input_it_depends_on_changes(inputs: object, changed: dict, ignores: dict) -> None:
    for value, ignored in ignores.items():
        for name, other in changed.items():
            moved = replace(inputs, **{name: other})
            assert (moved.key(value) != inputs.key(value)) == (name not in ignored), (value, name)


def test_the_close_up_seed_and_each_decoding_setting_reach_the_meter_and_the_replies() -> None:
    """The meter compares with a random set drawn from the decoding's seed: a changed seed is a new meter."""
    for settings in (
        replace(SCORING_SETTINGS, seed=7),
        replace(SCORING_SETTINGS, max_new_tokens=24),
        replace(SCORING_SETTINGS, do_sample=True),
    ):
        changed = replace(BASE, settings=settings)
        assert changed.key("meter") != BASE.key("meter") and changed.key("replies") != BASE.key("replies")
