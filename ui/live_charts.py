"""Altair charts of live runs (Knockout and Steer pages); each takes a plain frame and returns a chart (no streamlit)."""

from __future__ import annotations

import json

import altair as alt
import pandas as pd

from emo_core.judge import LABELS
from ui.charts import emotion_scale, plot_height
from ui.palette import EMOTION_COLORS

NEUTRAL_GREY = "#9A9A9A"
BREAKDOWN = "#D55E00"


def judge_bars(probabilities: pd.DataFrame, emotion: str, narrow: bool = False) -> alt.Chart:
    """The judge's probability of each label (``label``, ``probability``), the chosen emotion in full colour; ``narrow``
    (three charts side by side) shortens the title to fit."""
    colors = [EMOTION_COLORS.get(label, NEUTRAL_GREY) for label in LABELS]
    title = "The judge reads" if narrow else "What the judge reads in the words"
    return plot_height(
        alt.Chart(probabilities, title=alt.TitleParams(title, fontSize=12, anchor="start"))
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
            y=alt.Y("label:N", sort=list(LABELS), title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.Color("label:N", scale=alt.Scale(domain=list(LABELS), range=colors), legend=None),
            opacity=alt.condition(alt.datum.label == emotion, alt.value(1.0), alt.value(0.35)),
            tooltip=[alt.Tooltip("label:N", title="emotion"), alt.Tooltip("probability:Q", format=".2f")],
        ),
        150,
    )


def reading_line(
    per_token: pd.DataFrame, emotion: str, y_domain: tuple[float, float] | None = None, x_max: int | None = None, narrow: bool = False
) -> alt.Chart:
    """The internal reading of every emotion per generated token (``token``, ``emotion``, ``reading``), the chosen one bold.

    Charts of one run share ``y_domain`` and ``x_max`` (the longest reply), so they compare by eye. ``narrow`` (three
    charts side by side) keeps the legend to one column and the axis title short, which a third of a 1024 px page cuts off
    otherwise."""
    y_scale = alt.Scale(domain=list(y_domain), nice=False) if y_domain is not None else alt.Undefined
    x_scale = alt.Scale(domain=[0, max(1, x_max)], nice=False) if x_max is not None else alt.Undefined
    return plot_height(
        alt.Chart(per_token, title=alt.TitleParams("Inside, word by word", fontSize=12, anchor="start"))
        .mark_line()
        .encode(
            x=alt.X("token:Q", title="generated token", scale=x_scale),
            y=alt.Y("reading:Q", title="reading" if narrow else "reading (0 plain, 1 steered)", scale=y_scale),
            color=alt.Color("emotion:N", scale=emotion_scale(), legend=alt.Legend(orient="bottom", columns=1 if narrow else 2, title=None)),
            strokeWidth=alt.condition(alt.datum.emotion == emotion, alt.value(3), alt.value(1)),
            opacity=alt.condition(alt.datum.emotion == emotion, alt.value(1.0), alt.value(0.35)),
            tooltip=["token:Q", "emotion:N", alt.Tooltip("reading:Q", format=".2f")],
        ),
        130,
    )


def head_grid(heads: pd.DataFrame, score_title: str) -> alt.LayerChart:
    """Layer x head cells coloured by ``score``, selected cells (``selected``) outlined; clicking a cell selects it.

    The click selection is named ``cell`` and keyed by ``layer`` and ``head``.
    """
    bound = float(heads["score"].abs().max()) or 1.0
    click = alt.selection_point(name="cell", fields=["layer", "head"], on="click", clear=False)
    base = alt.Chart(heads).encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("head:O", title="head"),
        tooltip=[
            alt.Tooltip("token:N", title="head"),
            alt.Tooltip("score:Q", title=score_title, format=".3f"),
            alt.Tooltip("state:N", title="now"),
        ],
    )
    cells = base.mark_rect().encode(
        color=alt.Color("score:Q", scale=alt.Scale(scheme="blueorange", domain=[-bound, bound]), legend=alt.Legend(title=score_title)),
    )
    outline = base.transform_filter(alt.datum.selected).mark_rect(fill=None, stroke="black", strokeWidth=2.5)
    crosses = base.transform_filter(alt.datum.selected).mark_text(text="✕", fontSize=13, fontWeight="bold")
    return plot_height(cells.add_params(click) + outline + crosses, 200)


def chance_strip(effects: pd.DataFrame, measure: str) -> alt.LayerChart:
    """The random knockouts' effects as dots and the selection's as a red rule (``effect``, ``which``)."""
    random_sets = effects[effects["which"] == "random"]
    chosen = effects[effects["which"] == "your selection"]
    dots = (
        alt.Chart(random_sets)
        .mark_tick(thickness=2, size=28, color=NEUTRAL_GREY)
        .encode(x=alt.X("effect:Q", title=measure), tooltip=[alt.Tooltip("effect:Q", title="random set", format=".3f")])
    )
    rule = (
        alt.Chart(chosen)
        .mark_rule(color=BREAKDOWN, strokeWidth=3)
        .encode(x="effect:Q", tooltip=[alt.Tooltip("effect:Q", title="your selection", format=".3f")])
    )
    zero = alt.Chart(pd.DataFrame({"effect": [0.0]})).mark_rule(color="black", strokeDash=[3, 3]).encode(x="effect:Q")
    return plot_height(dots + zero + rule, 50)


def dose_response(sweep: pd.DataFrame, emotion: str, limit: float) -> alt.LayerChart:
    """Target probability and degenerate share by strength (``strength``, ``measure``, ``value``), strengths past ``limit`` shaded."""
    shade = (
        alt.Chart(sweep[sweep["broken"]])
        .mark_rect(color=BREAKDOWN, opacity=0.12)
        .encode(x=alt.X("low:Q"), x2="high:Q", tooltip=[alt.Tooltip("strength:Q", title="replies break down at")])
    )
    lines = (
        alt.Chart(sweep)
        .mark_line(point=True)
        .encode(
            x=alt.X("strength:Q", title="strength"),
            y=alt.Y("value:Q", title="share", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "measure:N",
                scale=alt.Scale(domain=[f"judged {emotion}", "degenerate replies"], range=[EMOTION_COLORS[emotion], "#444444"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["strength:Q", "measure:N", alt.Tooltip("value:Q", format=".2f")],
        )
    )
    limit_rule = alt.Chart(pd.DataFrame({"strength": [limit]})).mark_rule(strokeDash=[4, 3], color="#333333").encode(x="strength:Q")
    return plot_height(shade + lines + limit_rule, 200)


def map_with_arrow(points: pd.DataFrame, moved: pd.DataFrame, extent: tuple[tuple[float, float], tuple[float, float]]) -> alt.LayerChart:
    """The layer's prompts as faint dots, and the baseline and knocked-out runs (``moved``: ``x``, ``y``, ``run``) joined by an arrow."""
    (x_low, x_high), (y_low, y_high) = extent
    x = alt.X("x:Q", scale=alt.Scale(domain=[x_low, x_high]), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=[y_low, y_high]), axis=None)
    background = (
        alt.Chart(points)
        .mark_circle(size=18, opacity=0.25)
        .encode(
            x=x,
            y=y,
            color=alt.Color("emotion:N", scale=emotion_scale(), legend=alt.Legend(orient="bottom", columns=6, title="prompts asking for")),
        )
    )
    path = alt.Chart(moved).mark_line(color="black", strokeWidth=2).encode(x=x, y=y, order="order:Q")
    heads = (
        alt.Chart(moved)
        .mark_point(filled=True, size=220, stroke="black", strokeWidth=1.5)
        .encode(
            x=x,
            y=y,
            shape=alt.Shape("run:N", scale=alt.Scale(domain=["baseline", "knocked out"], range=["circle", "triangle"]), legend=None),
            fill=alt.Fill(
                "run:N",
                scale=alt.Scale(domain=["baseline", "knocked out"], range=["white", "black"]),
                legend=alt.Legend(orient="right", title=None),
            ),
            angle=alt.Angle("angle:Q", scale=None),
            tooltip=["run:N"],
        )
    )
    return plot_height(background + path + heads, 360)


def scale_end(values: pd.Series) -> float:
    """Where a heatmap's colour scale ends: the 95th percentile of ``|values|`` (a few extreme cells would wash out the rest;
    they show at the end of the scale)."""
    return float(values.abs().quantile(0.95)) or float(values.abs().max()) or 1.0


def token_heatmap(
    cells: pd.DataFrame, rows: str, row_order: list, labels: list[str], value: str, title: str, bound: float | None = None
) -> alt.Chart:
    """A row per ``rows`` value (in ``row_order``, top to bottom) by a column per reply token (``position``), coloured by
    ``value`` on a scale centred on 0 that ends at ``bound`` (``scale_end`` of the values unless given, so charts side by side
    can share one); the columns are labelled with ``labels`` (one per position, written under them).

    Tokens repeat in a reply, so the columns are positions and only their labels are words."""
    bound = bound or scale_end(cells[value])
    words = json.dumps(labels)
    return plot_height(
        alt.Chart(cells, title=alt.TitleParams(title, fontSize=12, anchor="start"))
        .mark_rect()
        .encode(
            x=alt.X(
                "position:O",
                title=None,
                axis=alt.Axis(labelExpr=f"{words}[datum.value]", labelAngle=-60, labelOverlap=False, labelFontSize=10, labelLimit=90),
            ),
            y=alt.Y(f"{rows}:O", sort=row_order, title=rows, axis=alt.Axis(labelOverlap=len(row_order) > 10)),
            color=alt.Color(
                f"{value}:Q", scale=alt.Scale(scheme="blueorange", domain=[-bound, bound], clamp=True), legend=alt.Legend(title=value)
            ),
            tooltip=[alt.Tooltip("word:N"), alt.Tooltip(f"{rows}:O"), alt.Tooltip(f"{value}:Q", format=".2f")],
        ),
        max(120, (22 if len(row_order) <= 10 else 9) * len(row_order)),
    )


def emotion_bars(profile: pd.DataFrame, value: str, emotion: str, title: str) -> alt.Chart:
    """One bar per emotion (``emotion`` and ``value`` columns), the chosen emotion in full colour."""
    return plot_height(
        alt.Chart(profile, title=alt.TitleParams(title, fontSize=12, anchor="start"))
        .mark_bar()
        .encode(
            x=alt.X(f"{value}:Q", title=None),
            y=alt.Y("emotion:N", sort=list(EMOTION_COLORS), title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.Color("emotion:N", scale=emotion_scale(), legend=None),
            opacity=alt.condition(alt.datum.emotion == emotion, alt.value(1.0), alt.value(0.4)),
            tooltip=["emotion:N", alt.Tooltip(f"{value}:Q", format=".3f")],
        ),
        130,
    )
