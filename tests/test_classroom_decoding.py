"""Classroom-safe decoding in the decode loop: a model pushed to write a listed word never does, greedy or sampled."""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager

import pytest

import emo_core as ec
from emo_core.classroom import blocked_in
from emo_core.generation import GenerationSettings
from tests.conftest import pushed, tiny_model


def _pieces(bundle: ec.ModelBundle, text: str) -> list[int]:
    return bundle.tokenizer(text, add_special_tokens=False)["input_ids"]


def _pushed_toward(bundle: ec.ModelBundle, word: str, rows: int = 2) -> AbstractContextManager[None]:
    """Every row pushed to write ``word`` (a space, then its pieces) over and over."""
    return pushed(bundle, [_pieces(bundle, " " + word)] * rows)


def _both(bundle: ec.ModelBundle, prompts: list[str], settings: GenerationSettings, push: AbstractContextManager[None]) -> tuple:
    """The replies without and with the classroom guard, while ``push`` is open."""
    guarded = GenerationSettings(**{**vars(settings), "classroom_safe": True})
    with push:
        return ec.generate(bundle, prompts, settings), ec.generate(bundle, prompts, guarded)


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("word", ["bitch", "slut", "asshole"])
def test_a_model_pushed_to_a_listed_word_writes_it_only_without_the_guard(tiny_llama: ec.ModelBundle, word: str, sample: bool) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Tell me about your day."), ec.chat_prompt(tiny_llama, "What happened at work?")]
    settings = GenerationSettings(max_new_tokens=16, do_sample=sample, seed=3)
    free, safe = _both(tiny_llama, prompts, settings, _pushed_toward(tiny_llama, word))
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


@pytest.mark.parametrize("tokens", [1, 2, 3])
def test_a_listed_word_is_refused_where_it_would_end_the_reply(tiny_llama: ec.ModelBundle, tokens: int) -> None:
    """' ass' mid-reply may still become 'assume'; as the reply's last token it would leave the listed word standing."""
    prompts = [ec.chat_prompt(tiny_llama, "Tell me about your day.")]
    free, safe = _both(
        tiny_llama, prompts, GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens), _pushed_toward(tiny_llama, "ass", 1)
    )
    assert "ass" in blocked_in(free[0].text)
    assert blocked_in(safe[0].text) == [] and len(safe[0].token_ids) == tokens, safe[0].text


def test_a_word_that_only_begins_like_a_listed_one_is_written_untouched(tiny_llama: ec.ModelBundle) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Tell me about your day.")]
    assume = _pieces(tiny_llama, " ass") + _pieces(tiny_llama, "ume")
    free, safe = _both(tiny_llama, prompts, GenerationSettings(max_new_tokens=6, min_new_tokens=6), pushed(tiny_llama, [assume]))
    assert free[0].text.count("assume") == 3 and safe[0].token_ids == free[0].token_ids


def test_rows_after_a_finished_row_are_still_guarded(tiny_llama: ec.ModelBundle) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Say nothing."), ec.chat_prompt(tiny_llama, "What happened at work?")]
    eos = tiny_llama.tokenizer.eos_token_id
    push = pushed(tiny_llama, [[eos], _pieces(tiny_llama, " bitch")])  # the first row ends at once
    free, safe = _both(tiny_llama, prompts, GenerationSettings(max_new_tokens=12), push)
    assert free[0].token_ids == safe[0].token_ids == () and "bitch" in blocked_in(free[1].text)
    assert blocked_in(safe[1].text) == [] and len(safe[1].token_ids) == 12


def test_rows_after_an_allowed_row_are_still_guarded(tiny_llama: ec.ModelBundle) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Say hello."), ec.chat_prompt(tiny_llama, "What happened at work?")]
    push = pushed(tiny_llama, [_pieces(tiny_llama, " hello"), _pieces(tiny_llama, " bitch")])
    free, safe = _both(tiny_llama, prompts, GenerationSettings(max_new_tokens=12), push)
    assert free[0].token_ids == safe[0].token_ids and "bitch" in blocked_in(free[1].text)
    assert blocked_in(safe[1].text) == [] and len(safe[1].token_ids) == 12


def test_guarded_sampling_is_reproducible_from_its_seed(tiny_llama: ec.ModelBundle) -> None:
    prompts = [ec.chat_prompt(tiny_llama, "Tell me about your day."), ec.chat_prompt(tiny_llama, "What happened at work?")]
    settings = GenerationSettings(max_new_tokens=12, do_sample=True, seed=5, temperature=2.0, top_p=1.0, classroom_safe=True)
    with _pushed_toward(tiny_llama, "slut"):
        runs = [[reply.token_ids for reply in ec.generate(tiny_llama, prompts, settings)] for _ in range(2)]
    assert runs[0] == runs[1]


def test_each_tokenizer_gets_its_own_guard_which_knows_the_models_end_tokens(tiny_llama: ec.ModelBundle) -> None:
    from emo_core.generation import word_guard

    other = ec.bundle_from(tiny_model("llama").float(), copy.deepcopy(tiny_llama.tokenizer), name="tiny-other")
    other.model.generation_config.eos_token_id = [tiny_llama.tokenizer.eos_token_id, 7]
    guard = word_guard(other)
    assert guard is word_guard(other) and guard is not word_guard(tiny_llama)
    assert guard.tokenizer is other.tokenizer and 7 in guard.eos_ids and 7 not in word_guard(tiny_llama).eos_ids


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
