"""The Knockout page's many-scenarios grid and its sentence, without a model; the reproduce command, read back by the CLI."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from emo_core.baselines import Baseline
from emo_core.cli import _user_turns
from emo_core.generation import GenerationSettings
from emo_core.knockout import Tally
from emo_core.parts import parse_tokens
from emo_core.scenarios import PromptSpec
from ui import knockout_grid, reproduce

SPECS = [PromptSpec(f"s{i}", "work", "neutral", None, "system", f"Scenario <{i}> & more") for i in range(2)]
PARTS = parse_tokens(["L3N5", "L4N6", "L4H1"])[0]


def test_the_grid_escapes_replies_and_tints_them_only_once_judged() -> None:
    texts = ["<b>angry</b>", "calm", "", "x & y", "fine", "ok"]
    raw = knockout_grid.grid_html(SPECS, texts, "anger")
    assert "&lt;b&gt;angry&lt;/b&gt;" in raw and "<b>angry</b>" not in raw and "Scenario &lt;0&gt; &amp; more" in raw
    assert raw.count("<tr>") == 1 + len(SPECS) and "(nothing yet)" in raw and "reads as" not in raw
    scores = pd.DataFrame(
        {"p_target": [0.9, 0.1, 0.5, 0.0, 1.0, 0.2], "predicted": ["anger", "neutral"] * 3, "degenerate": [False] * 5 + [True]}
    )
    judged = knockout_grid.grid_html(SPECS, texts, "anger", scores)
    assert judged.count("reads as anger") == 3 and judged.count("not language") == 1
    assert "rgba(213, 94, 0, 0.63)" in judged and "rgba(213, 94, 0, 0.08)" in judged  # tint grows with the probability


def test_the_sentence_counts_in_plain_words_and_says_when_it_is_within_chance() -> None:
    strong = knockout_grid.counts_sentence(Tally(12, 10, 9, 1, 0, 0), "anger", PARTS, 3)
    assert "Of 12 baseline replies, 10 read as anger." in strong and "**9 of 10** lost their anger" in strong
    assert "3 random parts" in strong and "**1 of 10** did" in strong and "more than chance" in strong
    assert "less than 0.1% of the time" in strong  # p = 0.0005: not "0.0%"
    assert "only 2.9% of the time" in knockout_grid.counts_sentence(Tally(12, 10, 6, 1, 0, 0), "anger", PARTS, 3)
    weak = knockout_grid.counts_sentence(Tally(12, 6, 3, 2, 1, 0, 0), "fear", PARTS[:1], 1)
    assert "1 random part from" in weak and "within chance" in weak and "1 knocked-out reply no longer" in weak
    none = knockout_grid.counts_sentence(Tally(12, 4, 1, 2, 0, 0), "fear", PARTS, 3)
    assert "no more often than random parts" in none
    empty = knockout_grid.counts_sentence(Tally(12, 0, 0, 0, 0, 0), "disgust", PARTS, 3)
    assert "None of the 12 baseline replies reads as disgust" in empty


def test_the_reproduce_command_names_every_setting_and_the_cli_reads_it() -> None:
    settings = GenerationSettings(max_new_tokens=24, do_sample=True, seed=7, classroom_safe=True)
    argv = reproduce.command(
        Baseline("steered", "circuit", 2.5), "sadness", PARTS, "mean", settings, ["work_eval_00:negative", "work_eval_01:positive"]
    )
    text = " ".join(argv)
    for piece in ("--baseline steered", "--method circuit", "--strength 2.5", "--knockout L3N5 L4N6 L4H1", "--mode mean", "--random"):
        assert piece in text
    assert "--sample" in argv and "--classroom-safe" in argv and argv[argv.index("--seed") + 1] == "7"

    from emo_core.cli import main  # noqa: F401 (the parser below is the CLI's own)

    parsed = argparse.Namespace(scenarios=None, scenario=["work_eval_00:negative", "work_eval_01:positive"], text=None)
    turns = _user_turns(parsed)
    assert [(t.skeleton_id, t.valence) for t in turns] == [("work_eval_00", "negative"), ("work_eval_01", "positive")]
    typed = reproduce.command(Baseline("plain"), "fear", [], "zero", GenerationSettings(), text="I lost it.\nOh no.")
    assert typed[typed.index("--text") + 1] == "I lost it.\nOh no." and "--knockout" not in typed and "--method" not in typed


def test_estimates_come_from_a_probe_once_then_from_the_last_run() -> None:
    from ui import pace

    probes = []
    action = "test-action"
    pace._paces().pop(action, None)
    assert pace.estimate(action, 10, lambda: probes.append(1) or 0.5) == 5.0
    assert pace.estimate(action, 4, lambda: probes.append(1) or 9.0) == 2.0 and probes == [1]  # measured once
    pace.record(action, 12.0, 6)
    assert pace.estimate(action, 3, lambda: 9.0) == 6.0  # the last run's pace
    assert pace.say(4.2) == "about 4 s" and pace.say(150) == "about 2 min" and pace.say(0.1) == "about 1 s"


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("strength", [0.0, 1.5, 2.25])
def test_the_new_run_settings_round_trip_through_the_link(safe: bool, strength: float) -> None:
    from ui.run import CLASSROOM, KNOCKOUT_STRENGTH, PAGE_KEYS, PARAMS, _as_param, read_run_link

    assert CLASSROOM in PAGE_KEYS["knockout"] and CLASSROOM in PAGE_KEYS["steer"] and KNOCKOUT_STRENGTH in PAGE_KEYS["knockout"]
    link = {PARAMS[CLASSROOM]: _as_param(CLASSROOM, safe), PARAMS[KNOCKOUT_STRENGTH]: _as_param(KNOCKOUT_STRENGTH, strength)}
    found, problems = read_run_link(link)
    assert problems == [] and found[CLASSROOM] is safe and found[KNOCKOUT_STRENGTH] == strength


def test_the_tour_warns_when_the_evaluation_found_the_emotions_knockout_short_of_its_target() -> None:
    from types import SimpleNamespace

    from ui.tour import _evaluated

    def entry(removed: int, drawn: int, p: float, met: bool) -> dict:
        return {"removed": removed, "carried": 40, "random_removed": drawn, "p_value": p, "meets_target": met}

    report = {"prepared": {"anger": entry(37, 7, 1e-9, True), "fear": entry(3, 3, 0.7, False), "disgust": entry(23, 4, 1e-5, False)}}
    results = SimpleNamespace(report=report)
    assert _evaluated(results, "anger") == "" and _evaluated(SimpleNamespace(report=None), "fear") == ""
    assert "no more than chance" in _evaluated(results, "fear") and "clearest for anger" in _evaluated(results, "fear")
    assert "more than chance, though some rows will keep disgust" in _evaluated(results, "disgust")
    report["prepared"]["anger"] = entry(10, 7, 0.2, False)  # none met the target: point to the clearest beat of chance
    assert "clearest for disgust" in _evaluated(results, "fear")
    report["prepared"]["disgust"] = entry(10, 7, 0.05, False)
    assert "clearest" not in _evaluated(results, "fear")
