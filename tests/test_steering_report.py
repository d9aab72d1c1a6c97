"""The Steer and Circuit pages' steering figures, from report.json: what the sentence says and why a reply counted."""

from __future__ import annotations

from ui import steering_report


def _entry(share: float) -> dict:
    return {
        "overall": share / 2,
        "per_emotion": {"anger": share, "sadness": 0.0},
        "by_judge": {"first": {"per_emotion": {"anger": 0.5, "sadness": 0.1}}, "second": {"per_emotion": {"anger": 0.4, "sadness": 0.0}}},
        "agreement": 0.61,
        "degenerate_rate": 0.25,
        "n": 96,
        "examples": {"anger": [{"reply": "How dare  they!", "hit": True, "scenario": "They lost my bag."}]},
    }


REPORT = {
    "steering": {"plain": _entry(0.05), "circuit": _entry(0.3)},
    "fluency_check": {"precision": 0.922, "recall": 0.868, "fluent": 126, "broken": 258},
}


def test_the_sentence_gives_the_count_each_judge_the_broken_share_and_chance() -> None:
    text = steering_report.sentence(REPORT, "circuit", "anger")
    assert "On 48 evaluation scenarios, **30%** of the replies steered toward anger through its circuit counted (15% over all" in text
    assert "50% (MiniLM) and 40% (n-gram)" in text and "61%" in text
    assert "25% of the replies broke down" in text
    assert "count for anger 5% of the time (chance)" in text
    assert "chance" not in steering_report.sentence(REPORT, "plain", "anger")


def test_an_unevaluated_method_says_how_to_evaluate() -> None:
    assert "python -m emo_core evaluate" in steering_report.sentence({}, "direction", "anger")
    assert "python -m emo_core evaluate" in steering_report.sentence(REPORT, "asked", "anger")


def test_the_verdict_says_why_a_reply_did_not_count() -> None:
    assert steering_report.verdict({"hit": True}, "fear").startswith("Counted: both judges read fear")
    assert steering_report.verdict({"hit": False, "reason": "punctuation run"}, "fear") == "Not counted: punctuation run."
    assert steering_report.verdict({"hit": False, "reason": "", "predicted": "anger", "predicted_2": "fear"}, "fear") == (
        "Not counted: the judges read anger and fear."
    )


def test_the_measurement_note_carries_the_fluency_checks_measured_agreement() -> None:
    assert (
        "92%" in steering_report.measured(REPORT)
        and "87%" in steering_report.measured(REPORT)
        and "384" in steering_report.measured(REPORT)
    )
    assert steering_report.measured({}) == steering_report.MEASURED
