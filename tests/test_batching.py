"""The shared live batch: generations that arrive while others decode join them, and each equals its run alone."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
import torch

import emo_core as ec
from emo_core.batching import SharedBatch
from emo_core.errors import LimitError
from emo_core.generation import stream_replies
from emo_core.interventions import on_rows
from emo_core.turns import Turns

GREEDY = ec.GenerationSettings(max_new_tokens=12, repetition_penalty=1.05, no_repeat_ngram_size=3)


def _requests(bundle: ec.ModelBundle) -> list[tuple[list[str], ec.GenerationSettings, list, tuple[int, ...]]]:
    """Four generations unlike each other: prompt lengths, row counts, edits on some rows, sampling, reply lengths."""
    short = ec.chat_prompt(bundle, "The bus left early.")
    long = ec.chat_prompt(bundle, "My train was cancelled\nThe next one leaves tomorrow, and my sister's wedding is at noon.", "Be brief.")
    steer = ec.ResidualAddition({1: torch.linspace(-1, 1, bundle.shape.d_model)}, alpha=2.0, scale="rms")
    return [
        ([long, long], GREEDY, [on_rows(ec.HeadAblation(((0, 1), (1, 0))), (1,))], (1, 2)),
        ([short], replace(GREEDY, do_sample=True, seed=5, max_new_tokens=5), [], ()),
        ([short, long, short], replace(GREEDY, max_new_tokens=9), [on_rows(steer, (0, 2)), ec.NeuronAblation(((1, 3),), "zero")], (2,)),
        ([long], replace(GREEDY, do_sample=True, seed=2, min_new_tokens=4), [steer], (1,)),
    ]


def _alone(bundle: ec.ModelBundle, request: tuple) -> list[ec.Reply]:
    prompts, settings, edits, observe = request
    return list(stream_replies(bundle, prompts, settings, edits, observe))[-1]


def _same(batched: list[ec.Reply], alone: list[ec.Reply]) -> None:
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [r.text for r in batched] == [r.text for r in alone]
    for b, a in zip(batched, alone, strict=True):
        assert (b.states is None) == (a.states is None)
        if a.states is not None:
            torch.testing.assert_close(b.states, a.states, atol=1e-4, rtol=1e-4)


def _join(threads: list[threading.Thread], seconds: float = 120) -> None:
    """Wait for every thread, at most ``seconds`` in all (a stuck batch fails the test once, not once per thread)."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a generation never finished"


def test_generations_that_join_a_running_batch_equal_their_runs_alone(tiny: ec.ModelBundle) -> None:
    shared = SharedBatch(tiny)
    requests = _requests(tiny)
    results: dict[int, list[ec.Reply]] = {}

    def run(i: int) -> None:
        prompts, settings, edits, observe = requests[i]
        for replies in shared.stream(prompts, settings, edits, observe):
            results[i] = replies

    later = [threading.Thread(target=run, args=(i,)) for i in range(1, len(requests))]
    prompts, settings, edits, observe = requests[0]
    for step, replies in enumerate(shared.stream(prompts, settings, edits, observe)):
        results[0] = replies
        if step == 2:  # the others arrive while the first decodes, and join it at a step boundary
            for thread in later:
                thread.start()
    _join(later)
    for i, request in enumerate(requests):
        _same(results[i], _alone(tiny, request))
    if shared.merges:
        assert shared.largest > len(requests[0][0])  # they really ran together


def test_every_yield_is_the_rows_so_far_and_the_last_is_the_whole_reply(tiny: ec.ModelBundle) -> None:
    shared = SharedBatch(tiny)
    prompts, settings, edits, observe = _requests(tiny)[0]
    alone = {tuple(len(r.token_ids) for r in step): step for step in stream_replies(tiny, prompts, settings, edits, observe)}
    steps = list(shared.stream(prompts, settings, edits, observe))
    assert steps[-1] == list(alone.values())[-1]
    for step in steps:  # a slow reader skips steps (it is handed the latest), never sees a row out of step
        assert step == alone[tuple(len(r.token_ids) for r in step)]


def test_a_stopped_generation_leaves_and_the_others_go_on(tiny: ec.ModelBundle) -> None:
    shared = SharedBatch(tiny)
    requests = _requests(tiny)
    other: list[list[ec.Reply]] = []
    started = threading.Event()

    def run() -> None:
        prompts, settings, edits, observe = requests[2]
        for replies in shared.stream(prompts, settings, edits, observe):
            started.set()
            other.append(replies)

    prompts, settings, edits, observe = requests[0]
    stream = shared.stream(prompts, settings, edits, observe)
    next(stream)
    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(timeout=60)
    stream.close()  # Stop: its rows leave at the next step
    thread.join(timeout=60)
    _same(other[-1], _alone(tiny, requests[2]))
    assert not shared._running and not shared._queued


def test_a_full_batch_makes_a_request_wait_for_room_and_says_so(tiny: ec.ModelBundle) -> None:
    requests = _requests(tiny)
    shared = SharedBatch(tiny, max_rows=3)
    told: list[str] = []
    results: dict[int, list[ec.Reply]] = {}

    def run(i: int) -> None:
        prompts, settings, edits, observe = requests[i]
        for replies in shared.stream(prompts, settings, edits, observe, on_wait=lambda: told.append(str(i))):
            results[i] = replies

    prompts, settings, edits, observe = requests[0]
    long = replace(settings, max_new_tokens=128, min_new_tokens=128)  # still running when the second request arrives
    first = shared.stream(prompts, long, edits, observe)
    results[0] = next(first)
    thread = threading.Thread(target=run, args=(2,))  # three rows: no room beside the first request's two
    thread.start()
    for results[0] in first:
        pass
    thread.join(timeout=120)
    assert told == ["2"]
    _same(results[2], _alone(tiny, requests[2]))


def test_the_batch_waits_for_work_that_has_the_model_alone(tiny: ec.ModelBundle) -> None:
    turns = Turns()
    shared = SharedBatch(tiny, turns)
    turns.acquire()  # e.g. a chance check on another page
    told: list[bool] = []
    results: list[list[ec.Reply]] = []
    request = _requests(tiny)[1]
    thread = threading.Thread(target=lambda: results.extend(shared.stream(*request, on_wait=lambda: told.append(True))))
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive() and told == [True] and not results
    turns.release()
    thread.join(timeout=60)
    _same(results[-1], _alone(tiny, request))


def test_limits_refuse_at_once_with_a_message(tiny: ec.ModelBundle) -> None:
    prompt = ec.chat_prompt(tiny, "Hello")
    with pytest.raises(LimitError, match="rows"):
        next(SharedBatch(tiny, max_rows=2).stream([prompt] * 3, GREEDY))
    shared = SharedBatch(tiny, max_queued=0)
    with pytest.raises(LimitError, match="waiting"):
        next(shared.stream([prompt], GREEDY))


def test_a_full_line_is_a_message_on_the_page_not_an_error(tiny: ec.ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ui.live.shared_replies`` stops the page with the library's sentence when too many requests wait."""
    from streamlit.testing.v1 import AppTest

    from ui import live

    monkeypatch.setattr(live, "shared_batch", lambda bundle: SharedBatch(tiny, max_queued=0))

    def page() -> None:
        import streamlit as st

        import emo_core as ec
        from ui import live

        for replies in live.shared_replies(None, ["hello"], ec.GenerationSettings(max_new_tokens=2)):
            st.write(replies[0].text)
        st.write("generated")

    app = AppTest.from_function(page).run()
    assert not app.exception and not [m for m in app.markdown if m.value == "generated"]
    assert any("already waiting" in w.value for w in app.warning)


def test_generations_that_arrive_together_equal_their_runs_alone(tiny: ec.ModelBundle) -> None:
    """Requests queued before the batch's first step join in one round (or, where the cache has sliding-window layers and
    cannot be merged, run one after another)."""
    shared = SharedBatch(tiny)
    requests = _requests(tiny)
    results: dict[int, list[ec.Reply]] = {}
    gate = threading.Barrier(len(requests))

    def run(i: int) -> None:
        gate.wait()
        for replies in shared.stream(*requests[i]):
            results[i] = replies

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    _join(threads)
    for i, request in enumerate(requests):
        _same(results[i], _alone(tiny, request))
    assert shared.merges == (tiny.name not in ("tiny-mistral", "tiny-gemma2"))  # their configs give sliding-window layers
