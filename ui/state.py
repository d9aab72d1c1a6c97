"""The view's shareable settings (model, layer, emotion, selected components) in the session and the URL.

A link opens with its settings restored; every rerun writes the current settings back to the URL
(Streamlit clears query parameters when the page changes), so the address bar is always a link to
what is on screen. Bad values in a link are replaced by defaults with a message, never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import streamlit as st

from emo_core.parts import parse_tokens
from emo_core.scenarios import EMOTIONS

MODEL, LAYER, EMOTION, SELECTION = "model", "layer", "emotion", "selection"
PROBLEMS = "_link_problems"
SEEDED = "_seeded_from_link"
REQUESTED = "_requested_view"
SELECTION_PARAM = "sel"
_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#!|~$:])")  # what Markdown (and Streamlit's :color[] and :icon:) would act on
_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only ("²".isdigit() is true, and int() refuses it), few enough for int()


@dataclass(frozen=True)
class View:
    """What a link needs to reproduce the current view."""

    model: str
    layer: int
    emotion: str
    selection: tuple[str, ...] = ()

    def query(self) -> dict[str, str]:
        """Query parameters for this view (the selection only when there is one)."""
        params = {MODEL: self.model, LAYER: str(self.layer), EMOTION: self.emotion}
        if self.selection:
            params[SELECTION_PARAM] = ",".join(self.selection)
        return params

    def as_json(self, page: str) -> str:
        """The view's settings as pretty JSON, for the settings download."""
        return json.dumps({"page": page, **asdict(self), "selection": list(self.selection)}, indent=2)


def whole_number(text: str) -> int | None:
    """The whole number a link's value spells in ASCII digits (spaces around allowed), else ``None``."""
    text = text.strip()
    return int(text) if _DIGITS.fullmatch(text) else None


def quoted(value: str, limit: int = 40) -> str:
    """A link's value as a message shows it: in quotes, cut to ``limit`` characters, unprintable ones as ``?``, Markdown escaped
    (a link could otherwise put a picture, a web link or coloured text into the message)."""
    cut = value[:limit] + ("…" if len(value) > limit else "")
    return "'" + _MARKUP.sub(r"\\\1", "".join(c if c.isprintable() else "?" for c in cut)) + "'"


def read_link(params: Mapping[str, str], models: list[str]) -> tuple[dict[str, object], list[str]]:
    """Settings found in query parameters, and a readable message for every value that could not be used.

    The layer is only checked to be a non-negative whole number here; its upper bound depends on the
    model and is checked once the model's results are loaded (``clamp_layer``).
    """
    found: dict[str, object] = {}
    problems: list[str] = []
    model = params.get(MODEL)
    if model is not None:
        if model in models:
            found[MODEL] = model
        else:
            problems.append(f"The link asks for the model {quoted(model)}, which has no saved results here; showing {models[0]} instead.")
    layer = params.get(LAYER)
    if layer is not None:
        if (number := whole_number(layer)) is not None:
            found[LAYER] = number
        else:
            problems.append(f"The link's layer {quoted(layer)} is not a layer number; showing the default layer.")
    emotion = params.get(EMOTION)
    if emotion is not None:
        if emotion.strip().lower() in EMOTIONS:
            found[EMOTION] = emotion.strip().lower()
        else:
            problems.append(f"The link's emotion {quoted(emotion)} is not one of {', '.join(EMOTIONS)}; showing {EMOTIONS[0]}.")
    selection = params.get(SELECTION_PARAM)
    if selection is not None:
        components, bad = parse_tokens([selection])
        found[SELECTION] = [component.token for component in components]
        if bad:
            shown = ", ".join(quoted(token) for token in bad[:5]) + (f" and {len(bad) - 5:,} more" if len(bad) > 5 else "")
            problems.append(f"Ignored {shown} in the link's selection (write L12H3 or L10N123).")
    return found, problems


def clamp_layer(layer: int, n_layers: int) -> tuple[int, str | None]:
    """``layer`` if the model has it, else its last layer with a message."""
    if 0 <= layer < n_layers:
        return layer, None
    return n_layers - 1, f"Layer {layer} does not exist in this model (layers 0 to {n_layers - 1}); showing layer {n_layers - 1}."


def seed_from_link(models: list[str]) -> bool:
    """On a session's first run, copy the URL's settings into the session and return True (later runs keep the widgets' values)."""
    if st.session_state.get(SEEDED):
        return False
    st.session_state[SEEDED] = True
    found, problems = read_link(st.query_params.to_dict(), models)
    st.session_state.update(found)
    st.session_state.setdefault(MODEL, models[0])
    st.session_state.setdefault(EMOTION, EMOTIONS[0])
    st.session_state.setdefault(SELECTION, [])
    note_problems(problems)
    return True


def note_problems(problems: list[str]) -> None:
    """Queue messages about unusable link values; the page shows them once."""
    st.session_state.setdefault(PROBLEMS, []).extend(problems)


def show_problems() -> None:
    """Show (then forget) the queued link messages."""
    for problem in st.session_state.pop(PROBLEMS, []):
        st.warning(problem, icon=":material/link_off:")


def current() -> View:
    """The view as the session holds it now."""
    return View(
        model=st.session_state[MODEL],
        layer=int(st.session_state.get(LAYER, 0)),
        emotion=st.session_state[EMOTION],
        selection=tuple(st.session_state.get(SELECTION, ())),
    )


def write_link(extra: Mapping[str, str] | None = None) -> None:
    """Make the address bar a link to the current view (and ``extra``, a page's own settings)."""
    wanted = {**current().query(), **(extra or {})}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def apply(settings: Mapping[str, object]) -> None:
    """Change the view (a button callback: it runs before the sidebar widgets are drawn)."""
    st.session_state.update(settings)


def request(settings: Mapping[str, object]) -> None:
    """Ask for a view change from code that runs after the sidebar is drawn; it applies on the next rerun."""
    st.session_state[REQUESTED] = dict(settings)


def apply_requested() -> None:
    """Apply a requested view change (called before the sidebar widgets are drawn)."""
    apply(st.session_state.pop(REQUESTED, {}))
