"""The "Reproduce" expander: the command line and the Python that write the same replies as a page's run.

Both go through ``knockout.comparison_rows`` and one batch, as the pages do, so greedy or seeded replies come out
token for token the same.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import streamlit as st

from emo_core.baselines import Baseline
from emo_core.generation import GenerationSettings
from emo_core.parts import Component
from ui.run import SCENARIO


def command(
    baseline: Baseline,
    emotion: str,
    parts: Sequence[Component],
    mode: str,
    settings: GenerationSettings,
    scenario_keys: Sequence[str] = (),
    text: str | None = None,
    control: bool = True,
) -> list[str]:
    """``python -m emo_core generate`` arguments for a run on our scenarios (``scenario_keys``) or a typed ``text``."""
    argv = ["python", "-m", "emo_core", "generate"]
    argv += ["--scenario", *scenario_keys] if scenario_keys else ["--text", text or ""]
    argv += ["--emotions", emotion, "--baseline", baseline.kind]
    if baseline.kind == "steered":
        argv += ["--method", baseline.method]
        if baseline.strength is not None:
            argv += ["--strength", f"{baseline.strength:.6g}"]
    if parts:
        argv += ["--knockout", *(c.token for c in parts), "--mode", mode]
        if control:
            argv.append("--random")
    argv += ["--max-new-tokens", str(settings.max_new_tokens), "--seed", str(settings.seed)]
    if settings.do_sample:
        argv.append("--sample")
    if settings.classroom_safe:
        argv.append("--classroom-safe")
    return [*argv, "--out", "replies.jsonl"]


def snippet(
    baseline: Baseline, emotion: str, parts: Sequence[Component], mode: str, settings: GenerationSettings, users: Sequence[str]
) -> str:
    """A short Python program that writes the same replies."""
    tokens = " ".join(c.token for c in parts)
    return f"""from dataclasses import replace

from emo_core import load_model
from emo_core.baselines import Baseline
from emo_core.knockout import comparison_rows
from emo_core.parts import parse_tokens
from emo_core.results import load_results
from emo_core.scoring import SCORING_SETTINGS, generate_rows

bundle = load_model("default")
results = load_results(bundle.name)
parts = parse_tokens({tokens!r}.split())[0]
baseline = Baseline({baseline.kind!r}, {baseline.method!r}, {baseline.strength!r})
users = {list(users)!r}
kit, means = results.steering_kit(bundle), results.neutral_means
rows = comparison_rows(bundle, kit, baseline, users, {emotion!r}, parts, {mode!r}, means, seed={settings.seed})
settings = replace(
    SCORING_SETTINGS,
    max_new_tokens={settings.max_new_tokens},
    do_sample={settings.do_sample},
    seed={settings.seed},
    classroom_safe={settings.classroom_safe},
)
for row, reply in zip(rows, generate_rows(bundle, rows, settings)):
    print(dict(row.tags)["variant"], "|", reply.text)
"""


def expander(
    baseline: Baseline,
    emotion: str,
    parts: Sequence[Component],
    mode: str,
    settings: GenerationSettings,
    users: Sequence[str],
    scenario_keys: Sequence[str] = (),
) -> None:
    """The expander with both; ``scenario_keys`` names our scenarios (else the first of ``users`` is typed text)."""
    with st.expander("Reproduce this run from code", icon=":material/terminal:"):
        argv = command(baseline, emotion, parts, mode, settings, scenario_keys, None if scenario_keys else users[0])
        st.markdown("From a terminal in the project folder (the replies go to `replies.jsonl`, one JSON line each):")
        st.code(shlex.join(argv), language="bash", wrap_lines=True)
        st.markdown("Or in Python:")
        st.code(snippet(baseline, emotion, parts, mode, settings, users), language="python")


def steer_expander(turned_up: Baseline, emotion: str, settings: GenerationSettings, user: str, scenario_keys: Sequence[str] = ()) -> None:
    """The Steer page's expander: the plain reply and the turned-up one, from the command line and from Python."""
    with st.expander("Reproduce this run from code", icon=":material/terminal:"):
        text = None if scenario_keys else user
        commands = [command(b, emotion, [], "zero", settings, scenario_keys, text) for b in (Baseline("plain"), turned_up)]
        for argv, out in zip(commands, ("plain.jsonl", "steered.jsonl"), strict=True):
            argv[-1] = out
        st.markdown("From a terminal in the project folder, the plain reply and then the turned-up one:")
        st.code("\n".join(shlex.join(argv) for argv in commands), language="bash", wrap_lines=True)
        st.markdown("Or in Python, both in one batch as the page writes them:")
        st.code(
            f"""from dataclasses import replace

from emo_core import load_model
from emo_core.baselines import Baseline
from emo_core.knockout import comparison_rows
from emo_core.results import load_results
from emo_core.scoring import SCORING_SETTINGS, generate_rows

bundle = load_model("default")
kit = load_results(bundle.name).steering_kit(bundle)
user = {user!r}
rows = [
    *comparison_rows(bundle, kit, Baseline("plain"), [user], {emotion!r}, []),
    *comparison_rows(bundle, kit, Baseline({turned_up.kind!r}, {turned_up.method!r}, {turned_up.strength!r}), [user], {emotion!r}, []),
]
settings = replace(SCORING_SETTINGS, max_new_tokens={settings.max_new_tokens}, do_sample={settings.do_sample}, seed={settings.seed})
settings = replace(settings, classroom_safe={settings.classroom_safe})
plain, steered = generate_rows(bundle, rows, settings)
print(plain.text, "|", steered.text)
""",
            language="python",
        )


def current_scenario_keys() -> list[str]:
    """The session's scenario as ``--scenario`` keys: ``[key]`` for one of ours, ``[]`` for typed text."""
    key = st.session_state.get(SCENARIO)
    return [key] if key else []
