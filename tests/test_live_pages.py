"""Pages that write text, run with the real built-in model, reading the text the page shows."""

from __future__ import annotations

import emo_core as ec
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import load_results
from emo_core.scenarios import EMOTION_SYSTEM
from tests.test_app import assert_clean, results_dir, start
from ui.data import results_root
from ui.replies import plain

__all__ = ["results_dir"]


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
