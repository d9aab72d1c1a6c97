"""The settings of a live run (scenario, baseline, method, strength, knockout mode, decoding) in the session and the URL.

The Knockout, Steer and part pages write these next to the shared view (model, layer, emotion, selection), so the
address bar reproduces a run: opening it restores every control, and *Generate* gives the same replies.
Bad values in a link are replaced by defaults with a message, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import streamlit as st

from emo_core import limits
from emo_core.baselines import LIVE_KINDS, METHODS
from emo_core.errors import LimitError
from emo_core.limits import MAX_NEW_TOKENS, MAX_SEED, MAX_STRENGTH
from emo_core.parts import parse_token
from emo_core.scenarios import EMOTIONS, VALENCES, Skeleton, load_skeletons
from ui.state import EMOTION, note_problems, quoted, whole_number

MIN_TOKENS = 8  # the reply-length slider's low end: fewer tokens show nothing of an emotion
STEER_METHODS = (*METHODS, "asked")  # how the Steer page turns an emotion up: a steering method, or the request (asked)
KNOCKOUT_METHODS = METHODS
MODES = ("zero", "mean")

SCENARIO, TEXT, SAMPLE, SEED, TOKENS = "run_scenario", "run_text", "run_sample", "run_seed", "run_tokens"
BASELINE, KNOCKOUT_METHOD, MODE = "knockout_baseline", "knockout_method", "knockout_mode"
STEER_METHOD, STRENGTH = "steer_method", "steer_strength"
KNOCKOUT_STRENGTH, CLASSROOM, PREPARED = "knockout_strength", "classroom_safe", "knockout_prepared"
PART = "part_token"  # the part page's head or neuron (``L20H3``)

DEFAULTS: dict[str, object] = {
    SCENARIO: "",
    TEXT: "",
    SAMPLE: False,
    SEED: 0,
    TOKENS: 48,
    BASELINE: "steered",
    KNOCKOUT_METHOD: "direction",
    MODE: "zero",
    STEER_METHOD: "direction",
    STRENGTH: None,
    KNOCKOUT_STRENGTH: None,
    CLASSROOM: True,
    PART: "",
}
PARAMS = {
    SCENARIO: "scenario",
    TEXT: "text",
    SAMPLE: "decode",
    SEED: "seed",
    TOKENS: "tokens",
    BASELINE: "baseline",
    KNOCKOUT_METHOD: "method",
    MODE: "mode",
    STEER_METHOD: "method",
    STRENGTH: "strength",
    KNOCKOUT_STRENGTH: "strength",
    CLASSROOM: "classroom",
    PART: "part",
}
PAGE_KEYS = {
    "knockout": (SCENARIO, TEXT, BASELINE, KNOCKOUT_METHOD, KNOCKOUT_STRENGTH, MODE, SAMPLE, SEED, TOKENS, CLASSROOM),
    "steer": (SCENARIO, TEXT, STEER_METHOD, STRENGTH, SAMPLE, SEED, TOKENS, CLASSROOM),
    "part": (PART, SCENARIO, TEXT, BASELINE, KNOCKOUT_METHOD, KNOCKOUT_STRENGTH, SAMPLE, SEED, TOKENS, CLASSROOM),
}


@dataclass(frozen=True)
class Scenario:
    """One of our scenarios with one outcome: what the pickers offer."""

    key: str  # "<skeleton_id>:<valence>"
    theme: str
    user: str  # the user turn: scenario and outcome on two lines
    label: str


@cache
def scenarios() -> tuple[Scenario, ...]:
    """Every shipped scenario and outcome (training and evaluation skeletons), in file order."""
    items = []
    for skeleton in [*load_skeletons("train"), *load_skeletons("eval")]:
        for valence in VALENCES:
            items.append(_scenario(skeleton, valence))
    return tuple(items)


def _scenario(skeleton: Skeleton, valence: str) -> Scenario:
    label = f"{skeleton.theme.replace('_', ' ')}: {skeleton.scenario.strip().rstrip('.')}. {skeleton.event[valence].strip()}"
    return Scenario(f"{skeleton.skeleton_id}:{valence}", skeleton.theme, skeleton.user_message(valence), label)


def scenario_by_key() -> dict[str, Scenario]:
    return {item.key: item for item in scenarios()}


def default_scenario() -> str:
    """The scenario a run starts on: an evaluation scenario with a bad outcome, which invites an emotional reply."""
    return next(item.key for item in scenarios() if item.key.endswith(":negative") and "_eval_" in item.key)


def check_text(text: str) -> str | None:
    """Why a typed scenario cannot be used, or ``None``."""
    if not text.strip():
        return "The typed scenario is empty; type a situation, or pick one of ours."
    try:
        limits.check_text(text, "The typed scenario")
    except LimitError as error:
        return str(error)
    return None


def read_run_link(params: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """Run settings found in query parameters, and a message for every value that could not be used."""
    found: dict[str, object] = {}
    problems: list[str] = []
    if (key := params.get("scenario")) is not None:
        if key in scenario_by_key():
            found[SCENARIO] = key
        else:
            problems.append(f"The link's scenario {quoted(key)} is not one of ours; showing the default scenario.")
    if (text := params.get("text")) is not None:
        if (problem := check_text(text)) is None:
            found[TEXT], found[SCENARIO] = text, ""
        else:
            problems.append(f"{problem} Showing the default scenario.")
    if (decode := params.get("decode")) is not None:
        if decode in ("greedy", "sample"):
            found[SAMPLE] = decode == "sample"
        else:
            problems.append(f"The link's decoding {quoted(decode)} is neither greedy nor sample; using greedy.")
    for key, name, low, high in ((SEED, "seed", 0, MAX_SEED), (TOKENS, "tokens", MIN_TOKENS, MAX_NEW_TOKENS)):
        if (raw := params.get(name)) is not None:
            if (value := whole_number(raw)) is not None and low <= value <= high:
                found[key] = value
            else:
                problems.append(f"The link's {name} {quoted(raw)} is not a whole number from {low} to {high}; using {DEFAULTS[key]}.")
    for key, name, allowed in ((BASELINE, "baseline", LIVE_KINDS), (MODE, "mode", MODES)):
        if (raw := params.get(name)) is not None:
            if raw in allowed:
                found[key] = raw
            else:
                problems.append(f"The link's {name} {quoted(raw)} is not one of {', '.join(allowed)}; using {DEFAULTS[key]}.")
    if (method := params.get("method")) is not None:
        if method in STEER_METHODS:
            found[STEER_METHOD] = method
            if method in KNOCKOUT_METHODS:
                found[KNOCKOUT_METHOD] = method
        else:
            problems.append(f"The link's method {quoted(method)} is not one of {', '.join(STEER_METHODS)}; using direction.")
    if (strength := params.get("strength")) is not None:
        value = _number(strength)
        if value is not None and 0 <= value <= MAX_STRENGTH:
            found[STRENGTH] = found[KNOCKOUT_STRENGTH] = value
        else:
            problems.append(f"The link's strength {quoted(strength)} is not a number from 0 to {MAX_STRENGTH:g}; using the tuned strength.")
    if (classroom := params.get("classroom")) is not None:
        if classroom in ("on", "off"):
            found[CLASSROOM] = classroom == "on"
        else:
            problems.append(f"The link's classroom setting {quoted(classroom)} is neither on nor off; keeping classroom-safe on.")
    if (part := params.get("part")) is not None:
        try:
            found[PART] = parse_token(part).token
        except ValueError:
            problems.append(f"The link's part {quoted(part)} is not a head or neuron (write L12H3 or L10N123); showing the default part.")
    if (prepared := params.get("prepared")) is not None:
        if prepared in EMOTIONS:
            found[PREPARED] = found[EMOTION] = prepared  # a prepared knockout belongs to its emotion
        else:
            problems.append(f"The link asks for the prepared knockout of {quoted(prepared)}, which is not an emotion; ignored it.")
    return found, problems


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def seed_run_from_link(params: Mapping[str, str]) -> None:
    """Copy a link's run settings into the session (on the session's first run), with defaults for the rest."""
    found, problems = read_run_link(params)
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.update(found)
    if not st.session_state[SCENARIO] and not st.session_state[TEXT]:
        st.session_state[SCENARIO] = default_scenario()
    note_problems(problems)


def run_query(page: str) -> dict[str, str]:
    """The query parameters of ``page``'s run (``knockout``, ``steer`` or ``part``), as the session holds them."""
    params: dict[str, str] = {}
    for key in PAGE_KEYS[page]:
        value = st.session_state.get(key, DEFAULTS[key])
        if key == SCENARIO and not value:
            continue
        if key == TEXT and (st.session_state.get(SCENARIO) or not value):
            continue
        if key in (STRENGTH, KNOCKOUT_STRENGTH, PART) and value in (None, ""):
            continue
        params[PARAMS[key]] = _as_param(key, value)
    return params


def _as_param(key: str, value: object) -> str:
    if key == SAMPLE:
        return "sample" if value else "greedy"
    if key in (STRENGTH, KNOCKOUT_STRENGTH):
        return f"{float(value):g}"
    if key == CLASSROOM:
        return "on" if value else "off"
    return str(value)
