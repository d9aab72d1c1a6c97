"""Classroom-safe decoding in the decode loop: a model pushed to write a listed word never does, greedy or sampled."""

from __future__ import annotations

import pytest
import torch

import emo_core as ec
from emo_core.classroom import blocked_in
from emo_core.generation import GenerationSettings


def _pushed_toward(bundle: ec.ModelBundle, word: str) -> torch.utils.hooks.RemovableHandle:
    """A hook that makes the model write ``word`` (a space, then its pieces) over and over, by raising the next piece's logit."""
    pieces = bundle.tokenizer(" " + word, add_special_tokens=False)["input_ids"]

    def push(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        last = kwargs["input_ids"][:, -1]
        for row, token in enumerate(last.tolist()):
            following = pieces[(pieces.index(token) + 1) % len(pieces)] if token in pieces else pieces[0]
            output.logits[row, -1, following] += 100.0

    return bundle.model.register_forward_hook(push, with_kwargs=True)


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("word", ["bitch", "slut", "asshole"])
def test_a_model_pushed_to_a_listed_word_writes_it_only_without_the_guard(tiny_llama: ec.ModelBundle, word: str, sample: bool) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Tell me about your day."), ec.chat_prompt(tiny_llama, "What happened at work?")]
    settings = GenerationSettings(max_new_tokens=16, do_sample=sample, seed=3)
    handle = _pushed_toward(tiny_llama, word)
    try:
        free = ec.generate(tiny_llama, prompts, settings)
        safe = ec.generate(tiny_llama, prompts, GenerationSettings(**{**vars(settings), "classroom_safe": True}))
    finally:
        handle.remove()
    assert all(word in blocked_in(reply.text) for reply in free)  # the push works
    assert all(blocked_in(reply.text) == [] for reply in safe), [reply.text for reply in safe]
    assert all(len(reply.token_ids) == 16 for reply in safe)  # the guard steers around the word; it does not stop the reply


def test_the_guard_changes_nothing_where_no_listed_word_comes_near(tiny_llama: ec.ModelBundle) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "I lost my keys."), ec.chat_prompt(tiny_llama, "The bus was late again.")]
    for sample in (False, True):
        settings = GenerationSettings(max_new_tokens=24, do_sample=sample, seed=11)
        plain = ec.generate(tiny_llama, prompts, settings)
        safe = ec.generate(tiny_llama, prompts, GenerationSettings(**{**vars(settings), "classroom_safe": True}))
        if not any(blocked_in(reply.text) for reply in plain):
            assert [reply.token_ids for reply in safe] == [reply.token_ids for reply in plain]


@pytest.mark.slow  # the real model
def test_disgust_steered_at_the_highest_strengths_writes_no_listed_word(embedded: ec.ModelBundle) -> None:
    """Steering toward disgust wrote slurs; classroom-safe decoding never writes one, with either method, at the tuned
    strength (the classroom cap) nor at three times it (the end of the Steer slider outside the classroom). All 32 replies
    are written in one batch."""
    from emo_core.baselines import Baseline, baseline_rows
    from emo_core.results import load_results
    from emo_core.scenarios import load_skeletons, neutral_prompts, spread
    from emo_core.scoring import SCORING_SETTINGS, generate_rows

    results = load_results(embedded.name)
    kit = results.steering_kit(embedded)
    prompts = spread(neutral_prompts(load_skeletons("eval")), 8)
    settings = GenerationSettings(**{**vars(SCORING_SETTINGS), "max_new_tokens": 48, "classroom_safe": True})
    runs = [(method, scale * kit.settings(method, "disgust")["strength"]) for method in ("circuit", "direction") for scale in (1, 3)]
    rows = [row for method, strength in runs for row in baseline_rows(Baseline("steered", method, strength), kit, prompts, ["disgust"])]
    replies = generate_rows(embedded, rows, settings)
    assert len(replies) == len(runs) * len(prompts)
    written = [(runs[i // len(prompts)], reply.text) for i, reply in enumerate(replies) if blocked_in(reply.text)]
    assert written == [], written
