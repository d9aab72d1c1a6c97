"""Scoring (``emo_core.scoring``): batching rows into generations and turning judged replies into a score table, checked
with a recording stand-in for ``generate`` and judges with known answers (no model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import torch

from emo_core import scoring
from emo_core.generation import GenerationSettings, Reply
from emo_core.interventions import NeuronAblation, ResidualAddition
from emo_core.judge import LABELS
from emo_core.scoring import SCORING_SETTINGS, Row, batch_edits, generate_rows, score_replies

PUSH = ResidualAddition({0: torch.ones(4)}, alpha=1.0)
CUT = NeuronAblation(((1, 2),), "zero")


class Recorder:
    """Stands in for ``generation.generate``: records each call and replies with text naming the prompt and its edits."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], GenerationSettings, list, tuple]] = []

    def __call__(
        self, bundle: object, prompts: Sequence[str], settings: GenerationSettings, edits: Sequence, observe: Sequence[int]
    ) -> list:
        self.calls.append((list(prompts), settings, list(edits), tuple(observe)))
        replies = []
        for row, prompt in enumerate(prompts):
            mine = sorted(type(e).__name__ for e in edits if e.rows == (row,))
            replies.append(Reply(f"{prompt}|{','.join(mine)}|call{len(self.calls)}", (row,), len(prompt)))
        return replies


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    monkeypatch.setattr(scoring, "generate", found)
    return found


def test_batch_edits_limit_each_rows_edits_to_that_row_in_order() -> None:
    rows = [Row("a", "anger", (PUSH, CUT)), Row("b", "fear"), Row("c", "joy", (CUT,))]
    edits = batch_edits(rows)
    assert [(type(e).__name__, e.rows) for e in edits] == [("ResidualAddition", (0,)), ("NeuronAblation", (0,)), ("NeuronAblation", (2,))]
    assert batch_edits([]) == []


def test_every_row_gets_its_own_reply_in_the_order_given(recorder: Recorder) -> None:
    rows = [Row("p2", "anger", (PUSH,)), Row("p1", "fear", (CUT,)), Row("p3", "anger"), Row("p1", "sadness", (PUSH, CUT))]
    replies = generate_rows(None, rows, batch_size=100)
    assert [r.text.split("|")[:2] for r in replies] == [
        ["p2", "ResidualAddition"],
        ["p1", "NeuronAblation"],
        ["p3", ""],
        ["p1", "NeuronAblation,ResidualAddition"],
    ]
    ((prompts, settings, _, observe),) = recorder.calls
    assert prompts == sorted(prompts) == ["p1", "p1", "p2", "p3"]  # one prompt's rows side by side, so its prefill is shared
    assert settings == SCORING_SETTINGS and observe == ()


def test_plain_rows_of_one_prompt_share_a_greedy_reply_but_not_a_sampled_one(recorder: Recorder) -> None:
    rows = [Row("p", "anger"), Row("q", "fear"), Row("p", "fear"), Row("p", "joy", (PUSH,)), Row("q", "anger")]
    replies = generate_rows(None, rows)
    assert sorted(recorder.calls[0][0]) == ["p", "p", "q"]  # the steered row is its own; the plain ones once per prompt
    assert replies[0] is replies[2] and replies[1] is replies[4] and replies[3] is not replies[0]
    sampled = GenerationSettings(do_sample=True, seed=3)
    generate_rows(None, rows, sampled)
    assert len(recorder.calls[1][0]) == len(rows) and recorder.calls[1][1] == sampled


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7])
def test_batches_hold_at_most_batch_size_rows_and_give_the_same_replies(recorder: Recorder, batch_size: int) -> None:
    rows = [Row(f"p{i % 4}", "anger", (PUSH,) if i % 2 else ()) for i in range(7)]
    replies = generate_rows(None, rows, batch_size=batch_size, observe=(1, 2))
    sizes = [len(call[0]) for call in recorder.calls]
    unique = 2 + 3  # the plain rows' two prompts (p0, p2), and three steered rows
    assert sum(sizes) == unique and all(size <= batch_size for size in sizes) and sizes[:-1] == [batch_size] * (len(sizes) - 1)
    assert all(call[3] == (1, 2) for call in recorder.calls)
    assert [r.text.split("|")[:2] for r in replies] == [[row.prompt, "ResidualAddition" if row.interventions else ""] for row in rows]


def test_progress_goes_to_the_callback_or_to_a_bar_named_by_desc(recorder: Recorder, capsys: pytest.CaptureFixture) -> None:
    rows = [Row(f"p{i}", "anger", (PUSH,)) for i in range(5)]
    calls: list[tuple[int, int]] = []
    generate_rows(None, rows, batch_size=2, progress=lambda done, total: calls.append((done, total)), desc="tuning")
    assert calls == [(2, 5), (4, 5), (5, 5)] and "tuning" not in capsys.readouterr().err
    generate_rows(None, rows, batch_size=2, desc="tuning")
    err = capsys.readouterr().err
    assert "tuning" in err and "5/5" in err and "reply" in err
    generate_rows(None, rows, batch_size=2)
    assert "replies:" in capsys.readouterr().err


class KnownJudge:
    """Gives each text the distribution listed for it."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.full((len(texts), len(LABELS)), 0.02)
        for row, text in enumerate(texts):
            probs[row, LABELS.index(self.table[text])] = 0.88
        return probs


FLUENT_ANGRY = "I am so angry that they cancelled the trip again."
FLUENT_SCARED = "I am scared of what the doctor will say tomorrow."
BROKEN = "no no no no no no no no"


def test_a_score_table_row_per_reply_with_its_label_target_probability_and_fluency() -> None:
    rows = [Row("p", "anger", tags=(("method", "circuit"),)), Row("p", "anger", tags=(("valence", "bad"),)), Row("p", "fear")]
    texts = [FLUENT_ANGRY, BROKEN, FLUENT_ANGRY]
    judge = KnownJudge({FLUENT_ANGRY: "anger", BROKEN: "anger"})
    table = score_replies(judge, rows, [Reply(t, (), 0) for t in texts])
    assert list(table.columns[:6]) == ["emotion", "predicted", "p_target", "degenerate", "reason", "reply"]
    assert table["emotion"].tolist() == ["anger", "anger", "fear"] and table["predicted"].tolist() == ["anger", "anger", "anger"]
    assert table["p_target"].tolist() == pytest.approx([0.88, 0.88, 0.02])
    assert table["degenerate"].tolist() == [False, True, False] and table["reason"].tolist() == ["", "repeated word", ""]
    assert table["hit"].tolist() == [True, False, False]  # on target and fluent; broken text never counts
    assert table["reply"].tolist() == texts and "scenario" not in table
    assert table["method"].isna().tolist() == [False, True, True] and table["method"][0] == "circuit"  # a tag a row lacks is missing
    assert table["valence"].isna().tolist() == [True, False, True] and table["valence"][1] == "bad"
    assert not {"predicted_2", "p_target_2", "hit_1", "hit_2", "agree"} & set(table.columns)


def test_with_a_second_judge_a_hit_needs_both(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [Row("p", "anger"), Row("p", "anger"), Row("p", "fear"), Row("p", "fear")]
    texts = [FLUENT_ANGRY, FLUENT_SCARED, FLUENT_SCARED, BROKEN]
    first = KnownJudge({FLUENT_ANGRY: "anger", FLUENT_SCARED: "fear", BROKEN: "fear"})
    second = KnownJudge({FLUENT_ANGRY: "anger", FLUENT_SCARED: "sadness", BROKEN: "fear"})
    table = score_replies(first, rows, [Reply(t, (), 0) for t in texts], second)
    assert table["predicted_2"].tolist() == ["anger", "sadness", "sadness", "fear"]
    assert table["p_target_2"].tolist() == pytest.approx([0.88, 0.02, 0.02, 0.88])
    assert table["hit_1"].tolist() == [True, False, True, False] and table["hit_2"].tolist() == [True, False, False, False]
    assert table["agree"].tolist() == [True, False, False, True] and table["hit"].tolist() == [True, False, False, False]


def test_scenarios_go_to_the_fluency_check_and_into_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def reasons(texts: Sequence[str], scenarios: Sequence[str]) -> list:
        seen.append((list(texts), list(scenarios)))
        return ["ignores the scenario", None]

    monkeypatch.setattr(scoring, "degenerate_reasons", reasons)
    rows = [Row("p", "anger", scenario="My bike was stolen."), Row("p", "anger")]
    table = score_replies(KnownJudge({FLUENT_ANGRY: "anger"}), rows, [Reply(FLUENT_ANGRY, (), 0)] * 2)
    assert seen == [([FLUENT_ANGRY] * 2, ["My bike was stolen.", ""])]
    assert table["scenario"].tolist() == ["My bike was stolen.", ""] and table["hit"].tolist() == [False, True]
    assert table["reason"].tolist() == ["ignores the scenario", ""]


def test_no_rows_score_to_an_empty_table() -> None:
    table = score_replies(KnownJudge({}), [], [], KnownJudge({}))
    assert isinstance(table, pd.DataFrame) and len(table) == 0 and "hit" in table and "agree" in table
