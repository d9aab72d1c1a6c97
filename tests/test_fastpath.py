"""The decode layout: measured once, overridable, and the same tokens whichever layout runs (no timing assertions)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
import torch

import emo_core as ec
from emo_core import fastpath
from emo_core.fastpath import MARGIN, MAX_ROWS, LayoutChoice, forced_layout, layout_choice, small_batch_linear

SETTINGS = ec.GenerationSettings(max_new_tokens=8)
ALL_COLUMNS = LayoutChoice((True,) * MAX_ROWS, "test")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No override, no remembered choice; forgotten again afterwards so later tests measure for themselves."""
    monkeypatch.delenv(fastpath.ENV_VAR, raising=False)
    fastpath.reset_choices()
    yield monkeypatch
    fastpath.reset_choices()


@pytest.fixture
def prompt(embedded: ec.ModelBundle) -> str:
    return ec.chat_prompt(embedded, "My sister called to say she got the job\nShe starts on Monday.", "Keep the reply short.")


def test_measured_choice_is_valid(fresh: pytest.MonkeyPatch, embedded: ec.ModelBundle) -> None:
    choice = layout_choice(embedded.model)
    assert choice.source == "measured at start"
    assert len(choice.columns) == len(choice.plain_ms) == len(choice.columns_ms) == MAX_ROWS
    assert all(math.isfinite(ms) and ms > 0 for ms in choice.plain_ms + choice.columns_ms)
    assert choice.columns == tuple(c <= MARGIN * p for p, c in zip(choice.plain_ms, choice.columns_ms, strict=True))
    assert choice.why.endswith("(measured at start)") and " ms vs " in choice.why
    assert layout_choice(embedded.model) is choice


def test_a_tie_keeps_plain_and_why_reads_well() -> None:
    choice = LayoutChoice((True, False, True, True), "measured at start", (25.7, 10.0, 9.0, 8.0), (10.1, 9.9, 4.0, 4.1))
    assert [choice.layout(rows) for rows in (1, 2, 3, 4, 5)] == ["columns", "plain", "columns", "columns", "plain"]
    assert choice.why == (
        "column layout for 1 row: 10.1 ms vs 25.7 ms plain; plain layout for 2 rows: 10.0 ms vs 9.9 ms columns; "
        "column layout for 3-4 rows: 4.0/4.1 ms vs 9.0/8.0 ms plain (measured at start)"
    )
    assert LayoutChoice((False,) * MAX_ROWS, "EMO_DECODE_LAYOUT=plain").why == "plain layout for 1-4 rows (EMO_DECODE_LAYOUT=plain)"


@pytest.mark.slow  # the real model
def test_decision_is_measured_once_per_process(fresh: pytest.MonkeyPatch, embedded: ec.ModelBundle, prompt: str) -> None:
    calls = []

    def fake_measure(weights: list[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        calls.append(len(weights))
        return (10.0, 10.0, 10.0, 10.0), (5.0, 9.5, 5.0, 5.0)  # 9.5 vs 10 is a tie: plain

    fresh.setattr(fastpath, "_measure", fake_measure)
    choices: list[LayoutChoice] = []
    threads = [threading.Thread(target=lambda: choices.append(layout_choice(embedded.model))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ec.generate(embedded, [prompt], ec.GenerationSettings(max_new_tokens=2))
    ec.side_by_side(embedded, prompt, ec.GenerationSettings(max_new_tokens=2))
    assert len(calls) == 1
    assert len({id(choice) for choice in choices}) == 1 and choices[0].columns == (True, False, True, True)


def test_override_variable_is_read_once(fresh: pytest.MonkeyPatch, embedded: ec.ModelBundle) -> None:
    fresh.setattr(fastpath, "_measure", lambda weights: pytest.fail("an override must not measure"))
    fresh.setenv(fastpath.ENV_VAR, "columns")
    choice = layout_choice(embedded.model)
    assert choice.columns == (True,) * MAX_ROWS and "EMO_DECODE_LAYOUT=columns" in choice.why
    fresh.setenv(fastpath.ENV_VAR, "plain")
    assert layout_choice(embedded.model).columns == (True,) * MAX_ROWS  # decided once per process
    fastpath.reset_choices()
    assert layout_choice(embedded.model).columns == (False,) * MAX_ROWS
    with forced_layout("columns"):
        assert layout_choice(embedded.model).columns == (True,) * MAX_ROWS
    fresh.setenv(fastpath.ENV_VAR, "fastest")
    fastpath.reset_choices()
    with pytest.raises(ec.EmoCoreError, match="EMO_DECODE_LAYOUT"):
        layout_choice(embedded.model)


@pytest.mark.slow  # the real model
def test_chosen_path_is_used(fresh: pytest.MonkeyPatch, embedded: ec.ModelBundle, prompt: str) -> None:
    rows_seen: list[int] = []
    by_columns = fastpath._linear_by_columns

    def spy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows_seen.append(x.numel() // x.shape[-1])
        return by_columns(x, weight, bias)

    fresh.setattr(fastpath, "_linear_by_columns", spy)
    settings = ec.GenerationSettings(max_new_tokens=3, min_new_tokens=3)
    with forced_layout("plain"):
        ec.generate(embedded, [prompt], settings)
    assert rows_seen == []
    with forced_layout("columns"):
        ec.generate(embedded, [prompt], settings)
    linears = sum(isinstance(m, torch.nn.Linear) for m in embedded.model.modules())
    assert rows_seen == [1] * (1 + 2 * linears)  # the prefill's lm_head (its one kept row), then two decode steps
    rows_seen.clear()
    with torch.inference_mode():
        embedded.model(input_ids=torch.tensor([[42]]))  # outside a decode step: plain
    assert rows_seen == []
    fresh.setattr(fastpath, "_measure", lambda weights: ((10.0,) * MAX_ROWS, (5.0,) + (10.0,) * (MAX_ROWS - 1)))
    ec.side_by_side(embedded, prompt, settings)  # measured: columns for 1 row only, so a batch of 2 runs plain
    assert rows_seen == []
    ec.generate(embedded, [prompt], settings)
    assert set(rows_seen) == {1}


@pytest.mark.slow  # the real model
def test_layouts_give_the_same_tokens_and_logits_on_the_embedded_model(embedded: ec.ModelBundle) -> None:
    same_tokens_and_logits(embedded)


def test_layouts_give_the_same_tokens_and_logits_on_tiny_models(tiny: ec.ModelBundle) -> None:
    same_tokens_and_logits(tiny)


def same_tokens_and_logits(bundle: ec.ModelBundle) -> None:
    prompt = ec.chat_prompt(bundle, "I waited an hour for the bus\nIt never came.", "Keep the reply short.")
    ablation = [ec.HeadAblation(((0, 1), (1, 2)))]
    replies = {}
    for layout in ("plain", "columns"):  # batch 2 (one row untouched, one ablated), then batch 1
        with forced_layout(layout):
            replies[layout] = [*ec.side_by_side(bundle, prompt, SETTINGS, ablation), *ec.generate(bundle, [prompt], SETTINGS)]
    plain, columns = replies["plain"], replies["columns"]
    assert [reply.token_ids for reply in columns] == [reply.token_ids for reply in plain]
    tolerance = 1e-10 if bundle.dtype == torch.float64 else 1e-4
    for rows in (1, 2, 3):  # one new token per row, as in a decode step: every linear layer runs on `rows` rows
        ids = torch.arange(40, 40 + rows)[:, None]
        with torch.inference_mode():
            plain = bundle.model(input_ids=ids).logits
            with small_batch_linear(ALL_COLUMNS):
                columns = bundle.model(input_ids=ids).logits
        torch.testing.assert_close(columns, plain, atol=tolerance, rtol=tolerance)


def test_small_batch_layout_matches_linear() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 96)
    for rows in (1, 2, 3, 9):
        x = torch.randn(rows, 1, 64)
        with small_batch_linear(ALL_COLUMNS):
            fast = layer(x)
        torch.testing.assert_close(fast, layer(x))


def test_column_layout_stays_in_its_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    callers: list[int] = []
    by_columns = fastpath._linear_by_columns

    def spy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        callers.append(threading.get_ident())
        return by_columns(x, weight, bias)

    monkeypatch.setattr(fastpath, "_linear_by_columns", spy)
    layer, x = torch.nn.Linear(8, 8), torch.randn(1, 8)
    inside, finish = threading.Event(), threading.Event()

    def decode_like() -> None:
        with small_batch_linear(ALL_COLUMNS):
            layer(x)
            inside.set()
            finish.wait()
            layer(x)

    thread = threading.Thread(target=decode_like)
    thread.start()
    inside.wait()
    layer(x)  # this thread is in no block while the other one is
    finish.set()
    thread.join()
    layer(x)
    assert callers == [thread.ident, thread.ident]


@pytest.mark.parametrize(("budget", "rounds"), [(0.0, 1), (60.0, fastpath.ROUNDS)])
def test_measuring_stops_after_its_budget(monkeypatch: pytest.MonkeyPatch, budget: float, rounds: int) -> None:
    calls = []
    by_columns = fastpath._linear_by_columns
    monkeypatch.setattr(fastpath, "_linear_by_columns", lambda *args: calls.append(1) or by_columns(*args))
    monkeypatch.setattr(fastpath, "BUDGET_S", budget)
    plain_ms, columns_ms = fastpath._measure([torch.randn(16, 8), torch.randn(16, 8)])  # one shape: one timed block per timing
    assert len(calls) == 2 + rounds * MAX_ROWS  # two warm-up calls, then one per row count and round
    assert all(math.isfinite(ms) for ms in plain_ms + columns_ms)
