"""Links and session settings (``ui/state.py``, ``ui/run.py``): every value a link may carry is read, bounded and
explained with its exact message, and a session is seeded, written back and changed as the pages do, in bare mode."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
import streamlit as st

from emo_core.limits import MAX_NEW_TOKENS, MAX_SEED, MAX_STRENGTH, MAX_TEXT
from emo_core.scenarios import EMOTIONS, VALENCES, load_skeletons
from ui import run, state
from ui.run import (
    BASELINE,
    CLASSROOM,
    DEFAULTS,
    KNOCKOUT_METHOD,
    KNOCKOUT_STRENGTH,
    MIN_TOKENS,
    MODE,
    PART,
    PREPARED,
    SAMPLE,
    SCENARIO,
    SEED,
    STEER_METHOD,
    STRENGTH,
    TEXT,
    TOKENS,
    read_run_link,
)
from ui.state import EMOTION, LAYER, MODEL, PROBLEMS, SELECTION, View, clamp_layer, quoted, read_link, whole_number


@pytest.fixture(autouse=True)
def session() -> Iterator[None]:
    st.session_state.clear()
    st.query_params.clear()
    yield
    st.session_state.clear()
    st.query_params.clear()


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), (" 12 ", 12), ("000123456789", 123456789), ("1234567890123", None), ("-1", None), ("1.0", None), ("²", None), ("", None)],
)
def test_whole_numbers_are_ascii_digits_only(text: str, number: int | None) -> None:
    assert whole_number(text) == number


def test_a_quoted_value_is_cut_escaped_and_printable() -> None:
    assert quoted("plain") == "'plain'"
    assert quoted("a" * 41) == "'" + "a" * 40 + "…'" and quoted("a" * 40) == "'" + "a" * 40 + "'"
    assert quoted("abcdef", limit=3) == "'abc…'"
    assert quoted("*x* [y](z) :red[w]") == r"'\*x\* \[y\]\(z\) \:red\[w\]'"
    assert quoted("a\nb\x00c") == "'a?b?c'"


def test_a_link_view_keeps_what_is_good_and_explains_each_bad_value_exactly() -> None:
    found, problems = read_link({"model": "m2", "layer": " 7 ", "emotion": " Fear ", "sel": "L1H2, l0n3,L1H2"}, ["m1", "m2"])
    assert found == {MODEL: "m2", LAYER: 7, EMOTION: "fear", SELECTION: ["L1H2", "L0N3"]} and problems == []
    found, problems = read_link({"model": "x", "layer": "two", "emotion": "rage", "sel": "a,b,c,d,e,f,g,L3H3"}, ["m1", "m2"])
    assert found == {SELECTION: ["L3H3"]}
    assert problems == [
        "The link asks for the model 'x', which has no saved results here; showing m1 instead.",
        "The link's layer 'two' is not a layer number; showing the default layer.",
        f"The link's emotion 'rage' is not one of {', '.join(EMOTIONS)}; showing {EMOTIONS[0]}.",
        "Ignored 'a', 'b', 'c', 'd', 'e' and 2 more in the link's selection (write L12H3 or L10N123).",
    ]
    assert read_link({}, ["m1"]) == ({}, [])
    assert read_link({"layer": "-1"}, ["m1"]) == ({}, ["The link's layer '-1' is not a layer number; showing the default layer."])
    assert read_link({"sel": "a,b"}, ["m1"])[1] == ["Ignored 'a', 'b' in the link's selection (write L12H3 or L10N123)."]
    assert read_link({"sel": ""}, ["m1"]) == ({SELECTION: []}, [])


def test_a_layer_beyond_the_model_shows_its_last_layer() -> None:
    assert clamp_layer(0, 4) == (0, None) and clamp_layer(3, 4) == (3, None)
    assert clamp_layer(4, 4) == (3, "Layer 4 does not exist in this model (layers 0 to 3); showing layer 3.")
    assert clamp_layer(-1, 4) == (3, "Layer -1 does not exist in this model (layers 0 to 3); showing layer 3.")


def test_a_view_is_a_link_and_a_settings_file() -> None:
    view = View("m", 2, "anger", ("L1H2", "L3N4"))
    assert view.query() == {"model": "m", "layer": "2", "emotion": "anger", "sel": "L1H2,L3N4"}
    assert View("m", 0, "joy").query() == {"model": "m", "layer": "0", "emotion": "joy"}
    assert json.loads(view.as_json("Circuit")) == {
        "page": "Circuit",
        "model": "m",
        "layer": 2,
        "emotion": "anger",
        "selection": ["L1H2", "L3N4"],
    }
    assert view.as_json("Circuit").startswith('{\n  "page"')


def test_a_sessions_first_run_takes_the_link_then_keeps_its_own_settings() -> None:
    st.query_params.from_dict({"model": "m2", "layer": "3", "emotion": "bad"})
    assert state.seed_from_link(["m1", "m2"]) is True
    assert (st.session_state[MODEL], st.session_state[LAYER], st.session_state[EMOTION], st.session_state[SELECTION]) == (
        "m2",
        3,
        EMOTIONS[0],
        [],
    )
    assert len(st.session_state[PROBLEMS]) == 1 and "'bad'" in st.session_state[PROBLEMS][0]
    st.session_state[LAYER] = 5
    assert state.seed_from_link(["m1", "m2"]) is False and st.session_state[LAYER] == 5
    assert state.current() == View("m2", 5, EMOTIONS[0], ())


def test_an_empty_link_seeds_the_first_model_and_emotion() -> None:
    assert state.seed_from_link(["m1", "m2"])
    assert (st.session_state[MODEL], st.session_state[EMOTION], st.session_state[SELECTION]) == ("m1", EMOTIONS[0], [])
    assert state.current().layer == 0 and st.session_state.get(PROBLEMS, []) == []


def test_problems_are_shown_once() -> None:
    state.note_problems(["one"])
    state.note_problems(["two"])
    assert st.session_state[PROBLEMS] == ["one", "two"]
    state.show_problems()
    assert PROBLEMS not in st.session_state


def test_the_address_bar_follows_the_view_and_a_pages_extras() -> None:
    st.session_state.update({MODEL: "m", LAYER: 4, EMOTION: "fear", SELECTION: ["L1H1"]})
    state.write_link({"tokens": "24"})
    assert st.query_params.to_dict() == {"model": "m", "layer": "4", "emotion": "fear", "sel": "L1H1", "tokens": "24"}
    state.write_link()
    assert st.query_params.to_dict() == {"model": "m", "layer": "4", "emotion": "fear", "sel": "L1H1"}


def test_a_requested_view_applies_on_the_next_run_only() -> None:
    state.apply({EMOTION: "joy", LAYER: 2})
    assert (st.session_state[EMOTION], st.session_state[LAYER]) == ("joy", 2)
    state.request({EMOTION: "fear"})
    assert st.session_state[EMOTION] == "joy"
    state.apply_requested()
    assert st.session_state[EMOTION] == "fear" and state.REQUESTED not in st.session_state
    state.apply_requested()  # nothing requested: nothing changes
    assert st.session_state[EMOTION] == "fear"


# --- ui/run.py ------------------------------------------------------------------------------------------------------------


def test_a_run_link_sets_every_control_it_names() -> None:
    key = run.default_scenario()
    found, problems = read_run_link(
        {
            "scenario": key,
            "decode": "sample",
            "seed": str(MAX_SEED),
            "tokens": str(MIN_TOKENS),
            "baseline": "asked",
            "mode": "mean",
            "method": "circuit",
            "strength": "2.5",
            "classroom": "off",
            "part": " l20h3 ",
            "prepared": "fear",
        }
    )
    assert problems == []
    assert found == {
        SCENARIO: key,
        SAMPLE: True,
        SEED: MAX_SEED,
        TOKENS: MIN_TOKENS,
        BASELINE: "asked",
        MODE: "mean",
        STEER_METHOD: "circuit",
        KNOCKOUT_METHOD: "circuit",
        STRENGTH: 2.5,
        KNOCKOUT_STRENGTH: 2.5,
        CLASSROOM: False,
        PART: "L20H3",
        PREPARED: "fear",
        EMOTION: "fear",
    }
    assert read_run_link({"decode": "greedy", "classroom": "on", "tokens": str(MAX_NEW_TOKENS), "seed": "0", "strength": "0"})[0] == {
        SAMPLE: False,
        CLASSROOM: True,
        TOKENS: MAX_NEW_TOKENS,
        SEED: 0,
        STRENGTH: 0.0,
        KNOCKOUT_STRENGTH: 0.0,
    }
    assert read_run_link({"method": "asked"})[0] == {STEER_METHOD: "asked"}  # the Steer page's; the Knockout page has no "asked"
    assert read_run_link({"strength": str(MAX_STRENGTH)})[0][STRENGTH] == MAX_STRENGTH


def test_a_typed_scenario_replaces_the_picked_one() -> None:
    found, problems = read_run_link({"scenario": run.default_scenario(), "text": "My cat ran away."})
    assert found == {SCENARIO: "", TEXT: "My cat ran away."} and problems == []


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"scenario": "nope"}, "The link's scenario 'nope' is not one of ours; showing the default scenario."),
        ({"text": "  "}, "The typed scenario is empty; type a situation, or pick one of ours. Showing the default scenario."),
        ({"decode": "beam"}, "The link's decoding 'beam' is neither greedy nor sample; using greedy."),
        ({"seed": "-1"}, f"The link's seed '-1' is not a whole number from 0 to {MAX_SEED}; using 0."),
        ({"seed": str(MAX_SEED + 1)}, f"The link's seed '{MAX_SEED + 1}' is not a whole number from 0 to {MAX_SEED}; using 0."),
        (
            {"tokens": str(MIN_TOKENS - 1)},
            f"The link's tokens '{MIN_TOKENS - 1}' is not a whole number from {MIN_TOKENS} to {MAX_NEW_TOKENS}; using 48.",
        ),
        (
            {"tokens": str(MAX_NEW_TOKENS + 1)},
            f"The link's tokens '{MAX_NEW_TOKENS + 1}' is not a whole number from {MIN_TOKENS} to {MAX_NEW_TOKENS}; using 48.",
        ),
        ({"baseline": "continued"}, "The link's baseline 'continued' is not one of steered, asked, plain; using steered."),
        ({"mode": "half"}, "The link's mode 'half' is not one of zero, mean; using zero."),
        ({"method": "magic"}, "The link's method 'magic' is not one of direction, circuit, asked; using direction."),
        ({"strength": "nan"}, f"The link's strength 'nan' is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength."),
        ({"strength": "inf"}, f"The link's strength 'inf' is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength."),
        ({"strength": "-0.5"}, f"The link's strength '-0.5' is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength."),
        ({"strength": "20.5"}, f"The link's strength '20.5' is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength."),
        ({"strength": "strong"}, f"The link's strength 'strong' is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength."),
        ({"classroom": "maybe"}, "The link's classroom setting 'maybe' is neither on nor off; keeping classroom-safe on."),
        ({"part": "L20X3"}, "The link's part 'L20X3' is not a head or neuron (write L12H3 or L10N123); showing the default part."),
        ({"prepared": "rage"}, "The link asks for the prepared knockout of 'rage', which is not an emotion; ignored it."),
    ],
)
def test_each_bad_run_value_is_dropped_with_its_exact_message(params: dict[str, str], problem: str) -> None:
    assert read_run_link(params) == ({}, [problem])


def test_a_typed_scenario_too_long_is_refused_with_the_limit() -> None:
    found, problems = read_run_link({"text": "x" * (MAX_TEXT + 1)})
    assert (
        found == {}
        and len(problems) == 1
        and problems[0].startswith("The typed scenario")
        and problems[0].endswith("Showing the default scenario.")
    )
    assert run.check_text("x" * MAX_TEXT) is None and run.check_text("x" * (MAX_TEXT + 1)) == problems[0].removesuffix(
        " Showing the default scenario."
    )


def test_the_scenarios_are_every_skeleton_with_every_outcome_and_the_default_is_a_bad_evaluation_one() -> None:
    skeletons = [*load_skeletons("train"), *load_skeletons("eval")]
    run.scenarios.cache_clear()  # built now, not taken from an earlier test's call
    items = run.scenarios()
    assert [item.key for item in items] == [f"{s.skeleton_id}:{valence}" for s in skeletons for valence in VALENCES]
    assert list(items) == [  # the label: the theme in words, the scenario as one sentence, then the outcome
        run.Scenario(
            f"{s.skeleton_id}:{valence}",
            s.theme,
            s.user_message(valence),
            f"{s.theme.replace('_', ' ')}: {s.scenario.strip().rstrip('.')}. {s.event[valence].strip()}",
        )
        for s in skeletons
        for valence in VALENCES
    ]
    assert all("_" not in item.label.split(":")[0] and ".." not in item.label for item in items)
    assert any("_" in s.theme for s in skeletons)
    ended = dataclasses.replace(skeletons[0], scenario=skeletons[0].scenario.strip() + ". ")  # a scenario written with its full stop
    assert run._scenario(ended, "negative").label == run._scenario(skeletons[0], "negative").label
    default = run.default_scenario()
    assert default == next(item.key for item in items if item.key.endswith(":negative") and "_eval_" in item.key)
    assert run.scenario_by_key()[default].key == default and len(run.scenario_by_key()) == len(items)


def test_seeding_a_run_fills_the_defaults_the_link_and_the_default_scenario() -> None:
    run.seed_run_from_link({"tokens": "24", "seed": "bad"})
    assert st.session_state[TOKENS] == 24 and st.session_state[SEED] == 0
    assert st.session_state[SCENARIO] == run.default_scenario()
    assert all(st.session_state[key] == value for key, value in DEFAULTS.items() if key not in (TOKENS, SCENARIO))
    assert st.session_state[PROBLEMS] == [f"The link's seed 'bad' is not a whole number from 0 to {MAX_SEED}; using 0."]
    st.session_state.clear()
    run.seed_run_from_link({"text": "My cat ran away."})
    assert st.session_state[SCENARIO] == "" and st.session_state[TEXT] == "My cat ran away."


def test_a_run_writes_only_the_settings_its_page_has() -> None:
    st.session_state.update({SCENARIO: "a:negative", SAMPLE: True, SEED: 3, TOKENS: 24, STRENGTH: 1.5, KNOCKOUT_STRENGTH: None})
    assert run.run_query("steer") == {
        "scenario": "a:negative",
        "method": "direction",
        "strength": "1.5",
        "decode": "sample",
        "seed": "3",
        "tokens": "24",
        "classroom": "on",
    }
    st.session_state.update({SCENARIO: "", TEXT: "typed", CLASSROOM: False, KNOCKOUT_STRENGTH: 2.0, MODE: "mean", PART: "L1H1"})
    assert run.run_query("knockout") == {
        "text": "typed",
        "baseline": "steered",
        "method": "direction",
        "strength": "2",
        "mode": "mean",
        "decode": "sample",
        "seed": "3",
        "tokens": "24",
        "classroom": "off",
    }
    assert run.run_query("part")["part"] == "L1H1"
    st.session_state.update({SCENARIO: "a:negative", PART: ""})
    assert "text" not in run.run_query("knockout") and "part" not in run.run_query("part")


def test_five_bad_tokens_are_all_named_and_a_sixth_is_counted() -> None:
    five = read_link({"sel": "a,b,c,d,e"}, ["m"])[1]
    assert five == ["Ignored 'a', 'b', 'c', 'd', 'e' in the link's selection (write L12H3 or L10N123)."]
    assert read_link({"sel": "a,b,c,d,e,f"}, ["m"])[1] == [
        "Ignored 'a', 'b', 'c', 'd', 'e' and 1 more in the link's selection (write L12H3 or L10N123)."
    ]


def test_a_view_without_a_selection_and_no_queued_problems() -> None:
    st.session_state.update({MODEL: "m", EMOTION: "joy"})
    assert state.current() == View("m", 0, "joy", ())
    state.show_problems()  # nothing queued: nothing to show, no error


def test_link_problems_show_as_warnings_with_the_broken_link_icon() -> None:
    def page() -> None:
        from ui import state

        state.note_problems(["The link's layer 'x' is not a layer number; showing the default layer."])
        state.show_problems()

    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(page).run()
    assert [(w.value, w.icon) for w in app.warning] == [
        ("The link's layer 'x' is not a layer number; showing the default layer.", ":material/link_off:")
    ]
