"""Streaming several rows at once: what a live page redraws after each token, and the states it reads."""

from __future__ import annotations

import pytest
import torch

import emo_core as ec
from emo_core.generation import stream_replies
from emo_core.interventions import on_rows

SETTINGS = ec.GenerationSettings(max_new_tokens=10)


@pytest.fixture
def prompt(tiny: ec.ModelBundle) -> str:
    return ec.chat_prompt(tiny, "My train was cancelled\nThe next one leaves tomorrow.", "Keep the reply short.")


def test_streamed_rows_grow_and_end_as_the_generated_replies(tiny: ec.ModelBundle, prompt: str) -> None:
    edits = [on_rows(ec.HeadAblation(((0, 1), (1, 0), (2, 2))), (1,))]
    steps = list(stream_replies(tiny, [prompt, prompt], SETTINGS, edits, observe=(1, 2)))
    final = ec.generate(tiny, [prompt, prompt], SETTINGS, edits, observe=(1, 2))
    assert steps[-1] == final and len(steps) <= SETTINGS.max_new_tokens
    for row in range(2):
        ids = [step[row].token_ids for step in steps]
        assert all(later[: len(earlier)] == earlier for earlier, later in zip(ids, ids[1:], strict=False))
        assert steps[-1][row].states.shape == (max(len(final[row].token_ids), 1), 2, tiny.shape.d_model)
        assert (steps[-1][row].states == final[row].states).all()
    assert not torch.equal(final[0].states, final[1].states)  # the knockout reached only its own row


def test_stream_text_redraws_the_whole_reply(tiny: ec.ModelBundle, prompt: str) -> None:
    texts = list(ec.stream_text(tiny, prompt, SETTINGS))
    assert texts[-1] == ec.generate(tiny, [prompt], SETTINGS)[0].text
    assert "".join(texts) != texts[-1] or len(texts) == 1  # each item is the whole text so far, not a piece to append
