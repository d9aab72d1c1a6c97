"""Properties of the shipped results on the real built-in model (issue 22, item 2): the top-ranked neuron does what its
ranking says when it is really switched off."""

from __future__ import annotations

import random

import pytest
import torch

import emo_core as ec
from emo_core.baselines import Baseline
from emo_core.defaults import EMBEDDED_NAME
from emo_core.generation import GenerationSettings
from emo_core.knockout import reply_meter
from emo_core.parts import knockout, matched_random
from emo_core.results import Results, load_results
from emo_core.scenarios import EMOTIONS, neutral_prompts, training_skeletons
from emo_core.scoring import Row, generate_rows

pytestmark = pytest.mark.slow

REPLY = GenerationSettings(max_new_tokens=24)  # greedy
STEERED = Baseline("steered", "direction")


@pytest.fixture(scope="module")
def shipped() -> Results:
    return load_results(EMBEDDED_NAME)


@pytest.fixture(scope="module")
def levels(embedded: ec.ModelBundle, shipped: Results) -> dict[str, torch.Tensor]:
    """Per emotion, ``[3]`` readings of that emotion over a steered reply to one training scenario (teacher-forced): as
    written, with the emotion's top-ranked neuron switched off (mean ablation), and with a matched random neuron off. The six
    steered replies are written in one batch, each row with its own emotion's steering."""
    kit, reading, means = shipped.steering_kit(embedded), shipped.reading(), shipped.neutral_means
    scenario = neutral_prompts(training_skeletons(1))[2]  # the first training skeleton, bad outcome; never an evaluation one
    rows = [Row(STEERED.prompt(embedded, scenario.user, emotion), emotion, tuple(STEERED.edits(kit, emotion))) for emotion in EMOTIONS]
    replies = generate_rows(embedded, rows, REPLY)
    found = {}
    for e, (emotion, row, reply) in enumerate(zip(EMOTIONS, rows, replies, strict=True)):
        assert len(reply.token_ids) > 1, (emotion, reply.text)
        parts = shipped.ranked_parts(emotion, "neuron", 1)
        control = knockout(matched_random(parts, shipped.shape, random.Random(e)), "mean", means)
        found[emotion] = reply_meter(
            embedded, reading, row.prompt, reply.token_ids, list(row.interventions), knockout(parts, "mean", means), control
        )[:, e]
    return found


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_switching_off_the_top_ranked_neuron_lowers_its_emotions_reading(levels: dict[str, torch.Tensor], emotion: str) -> None:
    """The causal ranking's first neuron estimates the largest specific drop of the emotion's reading, so really switching
    it off (mean ablation) over a reply steered toward the emotion lowers that emotion's reading, and by more than switching
    off a random neuron of the same layer does (which could at most move it by chance)."""
    baseline, knocked_out, control = (float(v) for v in levels[emotion])
    assert knocked_out < baseline, (emotion, baseline, knocked_out, control)
    assert baseline - knocked_out > baseline - control, (emotion, baseline, knocked_out, control)
