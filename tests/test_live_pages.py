"""Pages that write text, run with the real built-in model, reading the text the page shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import emo_core as ec
from emo_core.cli import main
from emo_core.defaults import EMBEDDED_NAME
from emo_core.knockout import tally
from emo_core.results import load_results
from emo_core.scenarios import EMOTION_SYSTEM
from tests.test_app import assert_clean, results_dir, start
from ui import steering_report
from ui.data import results_root
from ui.pages import KNOCKOUT, STEER
from ui.replies import plain
from ui.state import LAYER

__all__ = ["results_dir"]

pytestmark = pytest.mark.slow  # every test runs the real model inside the app


def test_home_reply_shows_the_librarys_reply_once(embedded: ec.ModelBundle) -> None:
    """The Home reply is the finished reply, drawn once (it used to show every partial version joined together)."""
    app = start({"emotion": "sadness"})
    app.button(key="home_reply").click().run(timeout=120)
    assert_clean(app)
    prompts = load_results(EMBEDDED_NAME, results_root()).table("prompts").drop_duplicates(["scenario", "event"])
    row = prompts.iloc[app.selectbox(key="home_scenario").value]
    prompt = ec.chat_prompt(embedded, f"{row['scenario']}\n{row['event']}", EMOTION_SYSTEM.format(emotion="sadness"))
    reply = ec.generate(embedded, [prompt], ec.GenerationSettings(max_new_tokens=48))[0].text
    shown = [block.value for block in app.markdown]
    assert len(reply) > 20 and plain(reply) in shown
    assert sum(reply[:12] in block.replace("\\", "") for block in shown) == 1


RUN = {"emotion": "anger", "scenario": "work_eval_00:negative", "baseline": "steered", "method": "direction", "tokens": "16"}


def knockout_run(query: dict[str, str]) -> tuple[AppTest, list[ec.Reply]]:
    """Open the Knockout page from a link, press Generate, and return the app and its three replies (baseline, knocked out, control)."""
    app = start(query)
    app.switch_page(KNOCKOUT.script).run(timeout=180)
    app.button(key="knockout_generate").click().run(timeout=180)
    assert_clean(app)
    return app, app.session_state["knockout_last"][1]


def test_knockout_changes_the_knocked_out_reply_never_the_baseline() -> None:
    small, replies_small = knockout_run({**RUN, "sel": "L23H1,L23N5"})
    big, replies_big = knockout_run({**RUN, "sel": ",".join(f"L{layer}H{head}" for layer in range(15, 27) for head in range(4))})
    assert replies_small[0] == replies_big[0]  # the baseline never sees the knockout
    assert replies_small[1].text != replies_big[1].text and replies_big[1].text != replies_big[0].text
    shown = [block.value for block in big.markdown]
    unmarked = [re.sub(r":orange-background\[|\]", "", block) for block in shown]  # the highlight where the replies part
    assert any(plain(replies_big[0].text)[:20] in block for block in unmarked)  # the page shows the replies it generated
    assert any(block.startswith("**The replies part at token") for block in shown)
    assert any("One reply is an anecdote: the grid above counts 12." in block for block in shown)


def test_the_reproduce_command_writes_the_replies_the_page_shows(tmp_path: Path) -> None:
    """The CLI command in the close-up's *Reproduce* expander, run as written, gives the page's three replies."""
    app, replies = knockout_run({**RUN, "sel": "L20H3,L21H4,L22N100,L12N7", "mode": "mean", "decode": "sample", "seed": "5"})
    commands = [block.value for block in app.code if block.value.startswith("python -m emo_core generate")]
    assert len(commands) == 1, commands
    argv = shlex.split(commands[0])[3:]
    out = tmp_path / "replies.jsonl"
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["variant"] for record in written] == ["baseline", "knocked_out", "random"]
    assert [record["reply"] for record in written] == [reply.text for reply in replies]
    assert written[1]["parts"] == ["L20H3", "L21H4", "L22N100", "L12N7"] and written[0]["classroom_safe"] is True


def test_the_grid_writes_twelve_scenarios_three_ways_and_counts_them() -> None:
    app = start({**RUN, "tokens": "12"})
    app.switch_page(KNOCKOUT.script).run(timeout=180)
    app.button(key="knockout_preset_prepared").click().run(timeout=180)
    app.button(key="knockout_grid_run").click().run(timeout=300)
    assert_clean(app)
    _, texts, scores, parts = app.session_state["knockout_grid_last"]
    prepared = load_results(EMBEDDED_NAME, results_root()).prepared("anger")
    assert tuple(parts) == prepared.parts and len(texts) == 36 and list(scores["reply"]) == texts
    counted = tally(scores)
    sentence = f"**{counted.removed} of {counted.carried}** lost their anger"
    assert any(sentence in block.value for block in app.markdown) or counted.carried == 0
    verdicts = ("one-sided Fisher exact test", "no more often than random parts", "nothing can be removed")
    assert any(verdict in block.value for block in app.markdown for verdict in verdicts)
    assert any("measured" in block.value for block in app.caption)


def test_a_link_reproduces_a_sampled_run() -> None:
    """Two sessions opened from the same link write the same sampled replies (two sessions generating at once:
    ``test_browser_replies``, since AppTest runs share Streamlit's globals and cannot overlap)."""
    sampled = {**RUN, "tokens": "8", "decode": "sample", "seed": "11", "sel": "L20H3,L21H4,L22N100", "mode": "mean"}
    _, first = knockout_run(sampled)
    _, again = knockout_run(sampled)
    assert [r.text for r in first] == [r.text for r in again]
    _, other = knockout_run({**sampled, "sel": "L16H0,L17H1,L18H2,L19H3"})
    assert other[0] == first[0] and other[1].text != first[1].text


def test_steer_writes_a_steered_reply_beside_the_plain_one_at_two_strengths() -> None:
    texts = []
    for strength in ("1", "3"):
        app = start({**RUN, "method": "direction", "strength": strength, "classroom": "off"})
        app.switch_page(STEER.script).run(timeout=180)
        app.button(key="steer_generate").click().run(timeout=180)
        assert_clean(app)
        plain_reply, steered = app.session_state["steer_last"][1]
        assert plain_reply.text != steered.text
        assert any("The judge's anger probability went from" in block.value for block in app.markdown)
        texts.append((plain_reply.text, steered.text))
    assert texts[0][0] == texts[1][0] and texts[0][1] != texts[1][1]


def test_the_effect_meter_replays_toggles_on_one_recording_and_follows_the_map_layer() -> None:
    """A toggle re-uses the baseline's recording; moving the Layer slider moves the map's points to that layer."""
    app = start({**RUN, "sel": "L23H1"})
    app.switch_page(KNOCKOUT.script).run(timeout=180)
    recorded, meter = app.session_state["knockout_recording"][1], app.session_state["knockout_meter"][1]
    app.slider(key=LAYER).set_value(5).run(timeout=120)
    assert_clean(app)
    moved = app.session_state["knockout_meter"][1]
    assert app.session_state["knockout_recording"][1] is recorded and ("layer", 5) in app.session_state["knockout_meter"][0]
    assert torch.equal(moved.states[0, 0], recorded.last_token([5])[0]) and not torch.equal(moved.states, meter.states)
    assert any("map of layer 5" in block.value for block in app.subheader)


def test_a_new_seed_draws_new_random_parts_and_a_new_meter() -> None:
    """The meter's third number switches off a random set drawn from the decoding's seed: a new seed is a new set and a
    new meter, not the old set's number kept under a key that missed the seed."""
    app = start({**RUN, "sel": "L20H3,L21H4,L22N100", "decode": "sample", "seed": "1"})
    app.switch_page(KNOCKOUT.script).run(timeout=180)
    first = app.session_state["knockout_meter"][1]
    app.number_input(key="run_seed").set_value(2).run(timeout=120)
    assert_clean(app)
    again = app.session_state["knockout_meter"][1]
    assert again is not first and dict(app.session_state["knockout_meter"][0][1:])["settings"].seed == 2
    assert not torch.equal(torch.as_tensor(again.control), torch.as_tensor(first.control))  # another random set's reading
    assert torch.equal(torch.as_tensor(again.baseline), torch.as_tensor(first.baseline))  # the same baseline


def test_circuit_steering_writes_the_reply_the_page_shows_at_the_tuned_strength() -> None:
    app = start({**RUN, "method": "circuit"})
    app.switch_page(STEER.script).run(timeout=180)
    tuned = load_results(EMBEDDED_NAME, results_root()).steering_settings("circuit", "anger")["strength"]
    assert app.slider(key="steer_strength").value == tuned
    app.button(key="steer_generate").click().run(timeout=180)
    assert_clean(app)
    plain_reply, steered = app.session_state["steer_last"][1]
    assert len(steered.text) > 20 and plain_reply.text != steered.text
    shown = [block.value for block in app.markdown]
    assert any(plain(steered.text)[:20] in block for block in shown)
    assert any(f"(strength {tuned:g})" in block for block in shown)
    assert any("The judge's anger probability went from" in block for block in shown)
    results = load_results(EMBEDDED_NAME, results_root())  # next to the one reply, the evaluated figure for many
    assert steering_report.sentence(results.report or {}, "circuit", "anger") in shown
