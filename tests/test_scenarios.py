import json
from pathlib import Path

import pytest

from emo_core.errors import EmoCoreError
from emo_core.scenarios import EMOTIONS, THEMES, VALENCES, emotion_prompts, load_skeletons, neutral_prompts, read_skeletons


def test_training_split_has_8_themes_of_at_least_15() -> None:
    skeletons = load_skeletons("train")
    for theme in THEMES:
        assert sum(s.theme == theme for s in skeletons) >= 15
    assert {s.theme for s in skeletons} == set(THEMES)


def test_evaluation_split_is_separate() -> None:
    train, evaluation = load_skeletons("train"), load_skeletons("eval")
    assert len(evaluation) >= 24
    assert not {s.skeleton_id for s in train} & {s.skeleton_id for s in evaluation}
    assert not {s.scenario for s in train} & {s.scenario for s in evaluation}


def test_skeletons_are_neutral_first_person_with_three_outcomes() -> None:
    for s in load_skeletons("train") + load_skeletons("eval"):
        assert s.scenario.startswith("I ") and not s.scenario.endswith(".")
        assert all(s.event[v].endswith(".") for v in VALENCES)


def test_prompt_builders() -> None:
    skeletons = load_skeletons("train")[:2]
    prompts = emotion_prompts(skeletons)
    assert len(prompts) == 2 * len(VALENCES) * len(EMOTIONS)
    first = prompts[0]
    assert first.system == "Always reply in anger.\nKeep the reply to at most two sentences."
    assert first.user == f"{skeletons[0].scenario}\n{skeletons[0].event['positive']}"
    assert first.key == f"{skeletons[0].skeleton_id}__positive__anger"
    neutral = neutral_prompts(skeletons)
    assert len(neutral) == 6 and all(p.emotion is None and "reply in" not in p.system for p in neutral)


def test_bad_user_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    good = {"skeleton_id": "a", "theme": "work", "scenario": "I did it", "event": {v: "Done." for v in VALENCES}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"skeleton_id": "b"}) + "\n")
    with pytest.raises(EmoCoreError, match="line 2: missing field"):
        read_skeletons(path)
