"""Limits: reply length, text length, parts switched off, sessions waiting for the model, and models too large for memory.

Each limit is a constant in ``emo_core`` (``limits``, ``selection.MAX_PARTS``, ``turns.MAX_WAITING``); going past it gives
one sentence that names the limit, from the library, the CLI or the app alike.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from transformers import AutoConfig, LlamaConfig

import emo_core as ec
from emo_core import cli, memory
from emo_core.limits import MAX_NEW_TOKENS, MAX_TEXT
from emo_core.models import load_model
from emo_core.parts import MAX_PARTS, Component, knockout
from emo_core.scenarios import read_skeletons
from emo_core.turns import MAX_WAITING, Turns
from tests.conftest import FAMILIES, tiny_model
from tests.test_app import no_model, results_dir, start

__all__ = ["no_model", "results_dir"]  # autouse: pages never load the model, and read the shipped (or a synthetic) cache


def _scenario_file(folder: Path, scenario: str) -> Path:
    record = {"skeleton_id": "a", "theme": "work", "scenario": scenario, "event": dict.fromkeys(("positive", "neutral", "negative"), "Ok.")}
    (folder / "s.jsonl").write_text(json.dumps(record))
    return folder / "s.jsonl"


def test_reply_length_is_capped_in_the_library_the_cli_and_links(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ec.LimitError, match=f"choose from 1 to {MAX_NEW_TOKENS} tokens"):
        ec.GenerationSettings(max_new_tokens=MAX_NEW_TOKENS + 1)
    argv = [
        "generate",
        "--scenarios",
        str(_scenario_file(tmp_path, "I work.")),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--max-new-tokens",
        "1000",
    ]
    assert cli.main(argv) == 2  # before the model is loaded: no model is needed to say so
    assert f"choose from 1 to {MAX_NEW_TOKENS} tokens" in capsys.readouterr().err
    app = start({"tokens": str(MAX_NEW_TOKENS + 1)})
    assert any(f"from 8 to {MAX_NEW_TOKENS}" in w.value for w in app.warning) and app.session_state["run_tokens"] == 48


def test_text_length_is_capped_for_typed_scenarios_links_and_files(tmp_path: Path, embedded: ec.ModelBundle) -> None:
    with pytest.raises(ec.LimitError, match=f"the limit is {MAX_TEXT:,}"):
        ec.chat_prompt(embedded, "x" * (MAX_TEXT + 1))
    ec.chat_prompt(embedded, "x" * MAX_TEXT)
    app = start({"text": "x" * (MAX_TEXT + 1)})
    assert any(f"the limit is {MAX_TEXT:,}" in w.value for w in app.warning) and app.session_state["run_text"] == ""
    too_long = f"line 1: the scenario with its positive outcome has {MAX_TEXT + 4:,} characters; the limit is {MAX_TEXT:,}"
    with pytest.raises(ec.EmoCoreError, match=too_long):
        read_skeletons(_scenario_file(tmp_path, "x" * MAX_TEXT))  # with "\nOk." it is 4 characters too long


def test_selected_parts_are_capped_in_the_library_and_the_app() -> None:
    parts = [Component("neuron", 1, i) for i in range(MAX_PARTS + 1)]
    with pytest.raises(ec.LimitError, match=f"513 parts cannot be switched off at once; the limit is {MAX_PARTS}"):
        knockout(parts)
    link = ",".join(c.token for c in parts)
    app = start({"sel": link})
    assert not app.exception
    assert any(f"Kept the first {MAX_PARTS} of 513" in w.value for w in app.warning)
    assert len(app.session_state["selection"]) == MAX_PARTS == len(app.query_params["sel"].split(","))


def _hold(turns: Turns) -> tuple[threading.Event, threading.Thread]:
    """A caller that takes the turn and keeps it until the returned event is set."""
    taken, done = threading.Event(), threading.Event()

    def run() -> None:
        turns.acquire()
        taken.set()
        done.wait(10)
        turns.release()

    thread = threading.Thread(target=run)
    thread.start()
    assert taken.wait(10)
    return done, thread


def test_the_waiting_line_is_bounded_and_clears() -> None:
    turns = Turns(max_waiting=2)
    done, holder = _hold(turns)
    waiting = threading.Event()
    order: list[int] = []

    def wait_in_line(i: int) -> None:
        turns.acquire(on_wait=waiting.set)
        order.append(i)
        turns.release()

    waiters = [threading.Thread(target=wait_in_line, args=(i,)) for i in range(2)]
    for thread in waiters:
        thread.start()
    while turns.waiting < 2:
        waiting.wait(0.01)
    with pytest.raises(ec.LimitError, match="2 other requests are already waiting"):
        turns.acquire()
    done.set()
    for thread in [holder, *waiters]:
        thread.join(10)
    assert sorted(order) == [0, 1] and turns.waiting == 0
    turns.acquire()  # the line is empty again: the next request runs at once
    turns.release()
    assert MAX_WAITING >= 30  # a class of 30 sessions, each with a short pass on the model alone after its reply


def test_a_full_line_is_a_message_on_the_page_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ui.live.model_turn`` waits with a note, and stops the page with the library's sentence when the line is full."""
    from ui import live

    full = Turns(max_waiting=0)
    done, holder = _hold(full)
    monkeypatch.setattr(live, "_model_turns", lambda: full)

    def page() -> None:
        import streamlit as st

        from ui import live

        with live.model_turn():
            st.write("generated")

    app = AppTest.from_function(page).run()
    assert not app.exception and not [m for m in app.markdown if m.value == "generated"]
    assert any("already waiting" in w.value for w in app.warning)
    done.set()
    holder.join(10)
    app.run()
    assert not app.exception and [m for m in app.markdown if m.value == "generated"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_parameter_count_from_the_config_is_exact(family: str) -> None:
    model = tiny_model(family)
    assert memory.parameter_count(model.config) == sum(p.numel() for p in model.parameters())


def test_a_model_too_large_is_refused_before_loading_with_its_size(tmp_path: Path) -> None:
    """A 70B config with no weights at all: the refusal comes from the config alone, so nothing was read."""
    config = LlamaConfig(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, vocab_size=128256
    )
    config.save_pretrained(tmp_path)
    with pytest.raises(ec.ModelLoadError) as error:
        load_model(str(tmp_path), offline=True)
    message = str(error.value)
    assert "70.55 billion parameters, about 282.2 GB as float32" in message and "GB free" in message and "bfloat16" in message
    with pytest.raises(ec.ModelLoadError, match="about 141.1 GB as bfloat16") as error:
        load_model(str(tmp_path), dtype="bfloat16", offline=True)
    assert "half the size" not in str(error.value)


def test_the_free_memory_is_what_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded: ec.ModelBundle) -> None:
    model = tiny_model("llama").float()
    model.save_pretrained(tmp_path)
    embedded.tokenizer.save_pretrained(tmp_path)
    needed = memory.parameter_count(model.config) * 4
    monkeypatch.setattr(memory, "free_memory", lambda device: int(needed * memory.HEADROOM) - 1)
    with pytest.raises(ec.ModelLoadError, match="pick a smaller model"):
        load_model(str(tmp_path), offline=True)
    monkeypatch.setattr(memory, "free_memory", lambda device: int(needed * memory.HEADROOM) + 1)
    assert load_model(str(tmp_path), offline=True).shape.n_layers == 3
    assert memory.weight_dtype(AutoConfig.from_pretrained(tmp_path), "auto").itemsize == 4
