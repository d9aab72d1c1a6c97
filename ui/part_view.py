"""The part page's pieces: which part it shows, links to it from every page, and text tinted word by word.

A part's page is ``part?part=L20H3`` with the rest of the current view and run in the link, so a link opened in a new
tab shows the same scenario and reply (the ranked tables link so). Inside a session, a clicked head of the Circuit page's grid
or a part's button opens the page in place.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from emo_core.parts import Component, out_of_range, parse_token
from emo_core.store import CacheError
from ui.pages import GOTO, PART
from ui.run import PART as PART_KEY
from ui.run import run_query
from ui.state import apply, current

if TYPE_CHECKING:
    import altair as alt

    from emo_core.part_activity import TextTrace
    from emo_core.reading import LayerReading
    from emo_core.results import Results

NEWLINE = "⏎"
CLEAR_AUC = 0.8  # a layer's reading tells an emotion's sentences from the rest at least this well: its colours mean something
POSITIVE, NEGATIVE = (230, 159, 0), (0, 114, 178)  # orange and blue of the palette: toward / away


def link(component: Component | str) -> str:
    """The part page of ``component`` with the current view and run, as a link relative to the app's pages."""
    token = component if isinstance(component, str) else component.token
    return f"{PART.url_path}?" + urlencode({**current().query(), **run_query("part"), "part": token})


def open_part(token: str) -> None:
    """Callback: show ``token``'s part page (on the next run, in this session)."""
    apply({PART_KEY: token})
    st.session_state[GOTO] = PART.script


def _follow_click(key: str, kind: str) -> None:
    """Callback of a ``clickable`` chart: open the part clicked."""
    points = st.session_state.get(key, {}).get("selection", {}).get("cell") or []
    if points:
        open_part(Component(kind, int(points[0]["layer"]), int(points[0][kind])).token)


def clickable(chart: alt.Chart, key: str, kind: str) -> None:
    """Draw ``chart`` (one mark per part, with ``layer`` and a ``head`` or ``neuron`` field) so that a click opens the part's page."""
    import altair as alt

    picked = chart.add_params(alt.selection_point(name="cell", fields=["layer", kind], on="click"))
    st.altair_chart(picked, width="stretch", key=key, on_select=lambda: _follow_click(key, kind), selection_mode=["cell"])


def default_part(results: Results, emotion: str) -> Component:
    """The part a page opens on: the strongest of the emotion's prepared knockout (the highest causal score), else the top
    head of its causal ranking."""
    try:
        parts = results.prepared(emotion).parts
        e = results.emotion_index(emotion)
        scores = {kind: results.causal_scores("steered", kind, "mean")[e] for kind in {part.kind for part in parts}}
    except CacheError:
        return results.ranked_parts(emotion, "head", 1)[0]
    return max(parts, key=lambda part: float(scores[part.kind][part.layer, part.index]))


def checked(token: str, shape: dict[str, int]) -> tuple[Component | None, str | None]:
    """The part ``token`` names if the model has it, else ``None`` and why not (a link's or a typed part alike)."""
    try:
        component = parse_token(token)
    except ValueError as error:
        return None, str(error)
    problem = out_of_range(component, shape["n_layers"], shape["n_heads"], shape["d_mlp"])
    return (component, None) if problem is None else (None, problem)


def chosen(results: Results, emotion: str) -> tuple[Component, str | None]:
    """The part the session asks for, if the model has it, else ``default_part``; and why the asked one was not used."""
    token = st.session_state.get(PART_KEY) or ""
    component, problem = checked(token, results.shape) if token else (None, None)
    if component is not None:
        return component, None
    fallback = default_part(results, emotion)
    return fallback, f"{problem} Showing {fallback.token} instead." if problem else None


def _word(token: str) -> str:
    return html.escape(token.replace("\n", NEWLINE))


def tinted(
    tokens: Sequence[str], values: np.ndarray, bound: float | None = None, marked: int | None = None, reply_at: int | None = None
) -> str:
    """HTML of ``tokens`` each on a background as strong as ``|value| / bound`` (orange positive, blue negative); the token at
    index ``marked`` is outlined, and the reply starts on its own line at index ``reply_at``. Line breaks stay line breaks."""
    bound = bound or float(np.abs(values).max()) or 1.0
    spans = []
    for i, (token, value) in enumerate(zip(tokens, values, strict=True)):
        if i == reply_at:
            spans.append("<br><b>Reply:</b> ")
        alpha = min(abs(float(value)) / bound, 1.0)
        red, green, blue = POSITIVE if value >= 0 else NEGATIVE
        outline = "outline: 2px solid black;" if i == marked else ""
        title = html.escape(f"{token.strip() or token!r}: {float(value):.3f}")
        spans.append(
            f'<span title="{title}" style="background: rgba({red},{green},{blue},{alpha:.2f});{outline}'
            f' border-radius: 2px; white-space: pre-wrap">{_word(token)}</span>'
        )
        if "\n" in token:
            spans.append("<br>")
    return f'<div style="line-height: 1.9; font-size: 0.95rem">{"".join(spans)}</div>'


def axis_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as a chart's axis shows them: stripped, line breaks as ``⏎``, an empty one as ``·``, cut to 12 characters."""
    return [(token.replace("\n", NEWLINE).strip() or "·")[:12] for token in tokens]


LINK_COLUMN = st.column_config.LinkColumn("part", display_text=r"[?&]part=([^&]+)", help="Opens the part's own page in a new tab.")


def linked(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``table`` (with ``layer`` and a ``head`` or ``neuron`` column) with a first column ``part`` linking each row's part page."""
    tokens = [Component(kind, int(layer), int(index)).token for layer, index in zip(table["layer"], table[kind], strict=True)]
    return table.assign(part=[link(token) for token in tokens])[["part", *table.columns]]


def part_buttons(components: Sequence[Component], key: str, limit: int = 12) -> None:
    """A way to open each of ``components``' pages in place: a small button each, or for more than ``limit`` a picker."""
    if not components:
        return
    if len(components) <= limit:
        row = st.container(horizontal=True, gap="small", vertical_alignment="center")
        row.markdown("Look at one:")
        for component in components:
            row.button(component.token, key=f"{key}_{component.token}", type="tertiary", on_click=open_part, args=(component.token,))
        return
    pick_col, open_col = st.columns([3, 1], vertical_alignment="bottom")
    token = pick_col.selectbox("Look at one part", [c.token for c in components], key=f"{key}_pick")
    open_col.button("Open its page", key=f"{key}_open", on_click=open_part, args=(token,))


def layer_frame(text: TextTrace, layered: LayerReading, emotions: Sequence[str], emotion: str) -> tuple[pd.DataFrame, list[str]]:
    """The layer reading of ``emotion`` at every layer and every word of ``text``'s reply (``position``, ``word``, ``layer``,
    ``reading``), and the reply's words as axis labels."""
    levels = layered(text.resid_post.transpose(0, 1)).numpy()  # [T, L, E]
    e = list(emotions).index(emotion)
    positions = list(range(*text.reply))
    words = axis_labels([text.tokens[p] for p in positions])
    return token_cells(words, levels[positions, :, e], list(range(levels.shape[1])), "layer", "reading"), words


def token_cells(words: Sequence[str], values: np.ndarray, rows: Sequence, row: str, value: str) -> pd.DataFrame:
    """A ``[words, rows]`` grid of ``values`` in long form for ``live_charts.token_heatmap``: ``position`` (the word's
    index), ``word``, ``row`` (named by the row's ``rows`` entry) and ``value``."""
    return pd.DataFrame(
        [
            {"position": i, "word": word, row: name, value: float(values[i, j])}
            for i, word in enumerate(words)
            for j, name in enumerate(rows)
        ]
    )


def layer_chart(cells: pd.DataFrame, words: list[str], title: str, bound: float | None = None) -> alt.Chart:
    """``layer_frame``'s cells as a heatmap, the last layer on top (``bound``: the colour scale's end, to share one)."""
    from ui import live_charts

    n_layers = int(cells["layer"].max()) + 1
    return live_charts.token_heatmap(cells, "layer", list(range(n_layers - 1, -1, -1)), words, "reading", title, bound)


def layer_runs(layers: Sequence[int]) -> str:
    """``0–1, 9–29``: sorted layers as runs of consecutive numbers."""
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs)


def layer_caption(layered: LayerReading, emotions: Sequence[str], emotion: str, steered: Sequence[int] = ()) -> str:
    """What the layer-by-layer chart shows, at which layers its colours mean something (``CLEAR_AUC``), and where steering
    (at the ``steered`` layers) adds its own push to the states it reads."""
    e = list(emotions).index(emotion)
    n_layers = layered.auc.shape[0]
    clear = [layer for layer in range(n_layers) if float(layered.auc[layer, e]) >= CLEAR_AUC]
    where = (
        f"It tells {emotion} sentences from the rest well (AUC ≥ {CLEAR_AUC}) at layers {layer_runs(clear)}; elsewhere its "
        "colours say little."
        if clear
        else f"At no layer does it tell {emotion} sentences from the rest well (AUC < {CLEAR_AUC}): read it with care."
    )
    push = (
        f" The reply is steered: steering adds its push at layer{'s' if len(steered) > 1 else ''} {layer_runs(steered)}, so "
        "from there up the reading includes that push, not only what the model made of the words."
        if steered
        else ""
    )
    return (
        f"Each cell reads the hidden state at one word of the reply and one layer along {emotion}'s direction, against the other "
        f"emotions, calibrated per layer: 0 is the model reading neutral sentences, 1 a typical {emotion} sentence of the second "
        f"judge's training set (not the calibration of the reading elsewhere, which uses the last layers only). {where}{push}"
    )
