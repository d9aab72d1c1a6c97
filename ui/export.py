"""Download buttons: tables as CSV, charts as PNG or SVG, the view's settings as JSON.

Chart images are built and rendered only when a button is clicked (``st.download_button`` with a callable),
so moving a slider never pays for a chart build or a PNG conversion.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import partial

import altair as alt
import pandas as pd
import streamlit as st


def chart_bytes(make_chart: Callable[[], alt.TopLevelMixin], fmt: str) -> bytes:
    """The chart ``make_chart`` builds, rendered as ``png`` or ``svg`` (through vl-convert)."""
    chart = make_chart()
    if fmt == "png":
        binary = io.BytesIO()
        chart.save(binary, format="png", scale_factor=2)
        return binary.getvalue()
    text = io.StringIO()
    chart.save(text, format=fmt)
    return text.getvalue().encode()


def table_bytes(table: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV without the index."""
    return table.to_csv(index=False).encode()


def file_stem(*parts: object) -> str:
    """A safe file name stem from view parts: ``clusters_umap_layer12``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(str(part) for part in parts if part != "")).strip("-_")


def chart_downloads(make_chart: Callable[[], alt.TopLevelMixin], stem: str) -> None:
    """PNG and SVG buttons in a row under a chart; ``make_chart`` runs only on a click."""
    row = st.container(horizontal=True)
    row.download_button(
        "PNG image", partial(chart_bytes, make_chart, "png"), f"{stem}.png", "image/png", key=f"{stem}.png", icon=":material/image:"
    )
    row.download_button(
        "SVG image", partial(chart_bytes, make_chart, "svg"), f"{stem}.svg", "image/svg+xml", key=f"{stem}.svg", icon=":material/draw:"
    )


def table_download(table: pd.DataFrame, stem: str) -> None:
    """A CSV button under a table."""
    st.download_button("CSV table", partial(table_bytes, table), f"{stem}.csv", "text/csv", key=f"{stem}.csv", icon=":material/table:")
