"""The knockout curves of report.json as the Circuit page shows them: the frame and the sentence."""

from __future__ import annotations

from ui.frames import CURVE_SETS, RANKING_NAMES, curve_frame
from ui.narrative import curves_sentence


def point(top: float, random: float, passes: bool) -> dict:
    return {
        "top_drop": top,
        "top_ci95": [top - 0.1, top + 0.1],
        "random_drop": random,
        "random_ci95": [random - 0.05, random + 0.05],
        "n_top": 12,
        "three_times_random": passes,
    }


CURVES = {
    "reading": {
        "steered": {
            "n_prompts": 2,
            "causal": {"neuron": {"1": {"fear": point(0.05, 0.04, False)}, "4": {"fear": point(0.4, 0.02, True)}}},
            "paper": {"neuron": {"1": {"fear": point(0.01, 0.0, False)}, "4": {"fear": point(0.03, 0.01, False)}}},
        }
    },
    "judged": {"baseline": "steered", "neuron": {"16": {"fear": {**point(0.3, 0.05, True), "n_top": 48}}}},
}


def test_curve_frame_has_top_and_random_per_ranking_and_k() -> None:
    frame = curve_frame(CURVES, "steered", "neuron", "fear")
    assert len(frame) == 2 * 2 * 2
    assert set(frame["ranking"]) == set(RANKING_NAMES.values()) and set(frame["set"]) == set(CURVE_SETS)
    row = frame[(frame["k"] == 4) & (frame["ranking"] == RANKING_NAMES["causal"]) & (frame["set"] == CURVE_SETS[1])].iloc[0]
    assert (row["drop"], row["low"], row["high"]) == (0.02, 0.02 - 0.05, 0.02 + 0.05)
    assert curve_frame(CURVES, "steered", "head", "fear").empty


def test_curves_sentence_names_the_fewest_parts_that_beat_chance_and_the_judge() -> None:
    sentence = curves_sentence(CURVES, "steered", "neuron", "fear")
    assert "top 4 neurons" in sentence and "at least 3 times" in sentence and "0.40" in sentence
    assert "48 generated replies" in sentence and "top 16" in sentence
    failing = {"reading": {"steered": {"causal": {"neuron": {"2": {"fear": point(0.05, 0.04, False)}}}}}}
    assert "not clearly" in curves_sentence(failing, "steered", "neuron", "fear")
    assert "no head" in curves_sentence(CURVES, "steered", "head", "fear")
