"""Altair chart builders; each takes a frame from ``ui.frames`` and returns a chart (no streamlit).

The Clusters page redraws three charts on every layer switch. Building and validating an Altair chart costs tens of
milliseconds, so those three are drawn from cached data-free Vega-Lite specs (``spec_for``) with
``st.vega_lite_chart(frame, spec)``: only the data travels, and the browser swaps the marks instead of rebuilding the chart.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Hashable
from functools import cache

import altair as alt
import pandas as pd

from emo_core.scenarios import EMOTIONS
from ui.frames import CURVE_SETS, position_labels
from ui.palette import EMOTION_COLORS, PART_COLORS, VALENCE_SHAPES


def emotion_scale() -> alt.Scale:
    """The shared emotion -> color scale."""
    return alt.Scale(domain=list(EMOTION_COLORS), range=list(EMOTION_COLORS.values()))


def valence_scale() -> alt.Scale:
    """The shared valence -> point shape scale."""
    return alt.Scale(domain=list(VALENCE_SHAPES), range=list(VALENCE_SHAPES.values()))


def part_scale() -> alt.Scale:
    """Attention vs MLP colors (kept apart from the emotion colors)."""
    return alt.Scale(domain=list(PART_COLORS), range=list(PART_COLORS.values()))


DIVERGING = "blueorange"
LAYER_AXIS = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))  # layer runs along the bottom of every layer chart
HALF_WIDTH_TITLE = 26  # characters per title line in half a page (~250 px on a 1024 px screen), where Vega would cut it with '…'
MAX_POSITION_LABELS = 12  # labels per axis of the cross-layer heatmap: 30 px apart on a 1024 px screen, so none is dropped


def _title(text: str, width: int | None = None) -> str | list[str]:
    """``text`` as one title line, or as lines of at most ``width`` characters (Vega cuts a title that does not fit)."""
    return textwrap.wrap(text, width) if width and len(text) > width else text


def plot_height(chart: alt.TopLevelMixin, height: int) -> alt.TopLevelMixin:
    """``chart`` whose plotting area is ``height`` px tall, titles, axes and legends added around it, and as wide as its container.

    Streamlit sizes charts with ``autosize: fit``, which squeezes title, axes and legend into the given height: a 150 px chart
    with a title and a two-row legend kept about 40 px for its marks.
    """
    return chart.properties(height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def _signed_scale(values: pd.Series) -> alt.Scale:
    """A diverging color scale centred on zero and symmetric, so white always means 'no effect'."""
    bound = float(values.abs().max()) or 1.0
    return alt.Scale(scheme=DIVERGING, domain=[-bound, bound])


def cluster_map(points: pd.DataFrame, extent: tuple[tuple[float, float], tuple[float, float]]) -> alt.Chart:
    """Prompts as points colored by emotion and shaped by valence; hover shows the prompt, legend clicks highlight.

    Untitled, so its spec is the same at every layer and the browser swaps the points instead of redrawing the chart.
    """
    pick = alt.selection_point(fields=["emotion"], bind="legend")
    (x_low, x_high), (y_low, y_high) = extent
    return (
        alt.Chart(points)
        .mark_point(filled=True, size=46)
        .encode(
            x=alt.X("x:Q", scale=alt.Scale(domain=[x_low, x_high]), axis=None),
            y=alt.Y("y:Q", scale=alt.Scale(domain=[y_low, y_high]), axis=None),
            color=alt.Color(
                "emotion:N", scale=emotion_scale(), legend=alt.Legend(title="Emotion asked for (click one)", orient="bottom", columns=3)
            ),  # with the Outcome legend beside it, about 400 px wide: the Clusters page keeps the map at least 420 px
            shape=alt.Shape("valence:N", scale=valence_scale(), legend=alt.Legend(title="Outcome", orient="bottom", columns=1)),
            opacity=alt.condition(pick, alt.value(0.85), alt.value(0.07)),
            tooltip=[
                alt.Tooltip("emotion:N", title="Emotion asked for"),
                alt.Tooltip("scenario:N", title="Scenario"),
                alt.Tooltip("event:N", title="Outcome"),
                alt.Tooltip("valence:N", title="Outcome is"),
                alt.Tooltip("theme:N", title="Theme"),
            ],
        )
        .add_params(pick)
        .properties(height=470)
        .interactive()
    )


def cosine_heatmap(similarity: pd.DataFrame) -> alt.LayerChart:
    """6x6 similarity of the emotion directions, with the numbers written in the cells (untitled, like ``cluster_map``).

    Needs about 300 px: the legend sits under the cells so they keep the width (at 300 px each is ~40 px, room for '−0.40').
    """
    base = alt.Chart(similarity).encode(
        x=alt.X("other:N", sort=list(EMOTIONS), title=None, axis=alt.Axis(labelAngle=-40, labelOverlap=False)),
        y=alt.Y("emotion:N", sort=list(EMOTIONS), title=None),
        tooltip=[  # on both layers: the numbers cover most of each cell
            alt.Tooltip("emotion:N", title="emotion"),
            alt.Tooltip("other:N", title="compared with"),
            alt.Tooltip("similarity:Q", title="similarity", format=".2f"),
        ],
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "similarity:Q",
            scale=alt.Scale(scheme=DIVERGING, domain=[-1, 1]),
            legend=alt.Legend(title="similarity", orient="bottom", direction="horizontal", gradientLength=160),
        ),
    )
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text("similarity:Q", format=".2f"),
        color=alt.condition("abs(datum.similarity) > 0.6", alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(height=340)


def separation_chart(separation: pd.DataFrame, n_layers: int, title: str) -> alt.LayerChart:
    """Cluster separation and classifier accuracy by layer, with a dashed rule where the frame's ``current`` column is true."""
    base = alt.Chart(separation, title=title).encode(
        x=alt.X(
            "layer:Q",
            title="layer (depth in the model)",
            scale=alt.Scale(domain=[0, n_layers - 1], nice=False),
            axis=alt.Axis(tickMinStep=1),
        )
    )
    lines = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", title="score"),
        color=alt.Color("measure:N", scale=alt.Scale(range=["#333333", "#999999"]), legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["layer:Q", "measure:N", alt.Tooltip("value:Q", title="score", format=".2f")],
    )
    marker = base.transform_filter("datum.current").mark_rule(color="#D55E00", strokeDash=[4, 3])
    return (lines + marker).properties(height=260)


def data_free_spec(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec without its data, in Streamlit's look (Altair's default theme off)."""
    with alt.theme.enable("none"):
        spec = chart.to_dict()
    for key in ("data", "datasets"):
        spec.pop(key, None)
    return spec


@cache
def _data_free_spec_of(builder: Callable[..., alt.TopLevelMixin], args: tuple) -> dict:
    return data_free_spec(builder(pd.DataFrame(), *args))


def spec_for(builder: Callable[..., alt.TopLevelMixin], *args: Hashable) -> dict:
    """``builder(frame, *args)``'s data-free spec, built once per process for each set of arguments (a fresh copy each call)."""
    return copy.deepcopy(_data_free_spec_of(builder, args))


def head_heatmap(heads: pd.DataFrame, title: str) -> alt.Chart:
    """Layer x head importance, layer along the bottom like every other chart; the tooltip names each head (``L12H3``)."""
    heads = heads.assign(token=[f"L{layer}H{head}" for layer, head in zip(heads["layer"], heads["head"], strict=True)])
    return plot_height(
        alt.Chart(heads, title=title)
        .mark_rect()
        .encode(
            x=LAYER_AXIS,
            y=alt.Y("head:O", title="head"),
            color=alt.Color("score:Q", scale=_signed_scale(heads["score"]), legend=alt.Legend(title="importance")),
            tooltip=[
                alt.Tooltip("token:N", title="head"),
                "layer:O",
                alt.Tooltip("score:Q", title="importance", format=".4f"),
            ],
        ),
        180,
    )


def neuron_chart(neurons: pd.DataFrame, title: str) -> alt.Chart:
    """The strongest neurons of every layer as dots: height is how much each pushes toward the emotion (drawn in half a page)."""
    return plot_height(
        alt.Chart(neurons, title=_title(title, HALF_WIDTH_TITLE))
        .mark_circle(size=40, opacity=0.75, color="#444444")
        .encode(
            x=LAYER_AXIS,
            y=alt.Y("score:Q", title="contribution"),
            tooltip=["layer:O", "neuron:Q", "rank:Q", alt.Tooltip("score:Q", title="contribution", format=".4f")],
        ),
        200,
    )


def sublayer_chart(importance: pd.DataFrame, title: str) -> alt.Chart:
    """Importance of each layer's attention and MLP part, side by side (drawn in half a page)."""
    return plot_height(
        alt.Chart(importance, title=_title(title, HALF_WIDTH_TITLE))
        .mark_bar()
        .encode(
            x=LAYER_AXIS,
            xOffset=alt.XOffset("part:N"),
            y=alt.Y("importance:Q", title="importance"),
            color=alt.Color("part:N", scale=part_scale(), legend=alt.Legend(title=None, orient="bottom")),
            tooltip=["layer:O", "part:N", alt.Tooltip("importance:Q", format=".4f")],
        ),
        200,
    )


def position_ticks(order: list[str], most: int = MAX_POSITION_LABELS) -> list[str]:
    """At most ``most`` of the sublayer names to label, evenly spread, attention and MLP in turn (an odd step alternates them)."""
    step = max(1, -(-len(order) // most))
    step += 1 - step % 2
    return order[::step]


def cross_layer_heatmap(similarity: pd.DataFrame, title: str) -> alt.Chart:
    """How similar the emotion's direction is between every pair of sublayer outputs."""
    order = position_labels(int(similarity["from"].nunique()) // 2)
    ticks = position_ticks(order)
    return (
        alt.Chart(similarity, title=title)
        .mark_rect()
        .encode(
            # labelOverlap off: Vega's default drops every other label, which left only the attention ones
            x=alt.X("to:N", sort=order, title="compared with", axis=alt.Axis(values=ticks, labelAngle=-45, labelOverlap=False)),
            y=alt.Y("from:N", sort=order, title="direction after", axis=alt.Axis(values=ticks, labelOverlap=False)),
            color=alt.Color("similarity:Q", scale=alt.Scale(scheme=DIVERGING, domain=[-1, 1]), legend=alt.Legend(title="similarity")),
            tooltip=[
                alt.Tooltip("from:N", title="direction after"),
                alt.Tooltip("to:N", title="compared with"),
                alt.Tooltip("similarity:Q", title="similarity", format=".2f"),
            ],
        )
        .properties(height=420)
    )


def knockout_curve_chart(curve: pd.DataFrame, title: str) -> alt.LayerChart:
    """Drop of the emotion reading against how many parts are switched off: each ranking's top k (solid) and matched random k
    (dashed), with 95% intervals."""
    x = alt.X(
        "k:Q",
        title="parts switched off (k)",
        scale=alt.Scale(type="log", base=2),
        axis=alt.Axis(values=sorted(curve["k"].unique().tolist())),
    )
    base = alt.Chart(curve, title=title).encode(
        x=x,
        color=alt.Color("ranking:N", legend=alt.Legend(title=None, orient="bottom", direction="vertical", labelLimit=0)),
        strokeDash=alt.StrokeDash(
            "set:N",
            scale=alt.Scale(domain=list(CURVE_SETS), range=[[1, 0], [5, 3]]),
            legend=alt.Legend(
                title=None, orient="bottom", direction="vertical", labelLimit=0, symbolType="stroke", symbolStrokeColor="#555555"
            ),
        ),
    )
    lines = base.mark_line(point=True).encode(
        y=alt.Y("drop:Q", title="fall of the emotion reading"),
        tooltip=[
            "ranking:N",
            "set:N",
            "k:Q",
            alt.Tooltip("drop:Q", title="fall", format=".3f"),
            alt.Tooltip("low:Q", title="95% from", format=".3f"),
            alt.Tooltip("high:Q", title="95% to", format=".3f"),
        ],
    )
    bars = base.mark_errorbar().encode(y=alt.Y("low:Q", title="fall of the emotion reading"), y2="high:Q")
    zero = alt.Chart(pd.DataFrame({"drop": [0.0]})).mark_rule(color="#999999").encode(y="drop:Q")
    return plot_height(lines + bars + zero, 240)
