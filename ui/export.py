"""Download buttons: tables as CSV, charts as PNG or SVG, the view's settings as JSON.

Chart images are built and rendered only when a button is clicked (``st.download_button`` with a callable),
so moving a slider never pays for a chart build or a PNG conversion.

Streamlit 1.67 hands each such button a fresh id on every run and forgets the previous run's ids when the
next run ends. A click sent with an id the browser holds from before (right after a layer change, or while
a busy server answers late) then failed with "Deferred file … not found" in the server log, and the
browser got no file. Three things make every click give its file:

* the buttons do not rerun the app when clicked (``on_click="ignore"``): a click used to start a rerun
  that raced with its own file request, and could interrupt a run still drawing the page;
* each button keeps one key whatever the layer or emotion, so the browser keeps the same button (and
  Streamlit's "could not generate the file" message under it, should one ever be needed) instead of
  swapping in a new one mid-click;
* ``keep_retired_downloads`` lets a replaced button's callable answer for ``RETIRED_GRACE_S`` more seconds.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from functools import partial

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.runtime.media_file_manager import MediaFileManager

RETIRED_GRACE_S = 30.0
_ORPHAN_PASS = "_remove_orphaned_deferred_callables"  # Streamlit's private hook: drops every callable no button references


def keep_retired_downloads(grace_s: float = RETIRED_GRACE_S) -> bool:
    """Make Streamlit drop a deferred download's callable only ``grace_s`` seconds after no button shows it any more.

    Patches ``MediaFileManager`` once per process; returns whether the patch is in place (False when a Streamlit
    version lacks the private parts it relies on: then downloads behave as Streamlit ships them, and
    ``tests/test_export.py`` fails to say so).
    """
    original = getattr(MediaFileManager, _ORPHAN_PASS, None)
    if original is None or not hasattr(MediaFileManager, "_drop_deferred_id"):
        return False
    if getattr(original, "grace_s", None) == grace_s:
        return True
    unpatched = getattr(original, "unpatched", original)

    def remove_orphans_after_grace(manager: MediaFileManager) -> None:
        """Called with the manager's lock held, at the end of every script run."""
        referenced = {file_id for by_coordinates in manager._files_by_session_and_coord.values() for file_id in by_coordinates.values()}
        retired: dict[str, float] = manager.__dict__.setdefault("_retired_at", {})
        now = time.monotonic()
        for file_id in list(manager._deferred_callables):
            if file_id in referenced:
                retired.pop(file_id, None)
            elif now - retired.setdefault(file_id, now) >= grace_s:
                del retired[file_id]
                manager._drop_deferred_id(file_id)
        for file_id in retired.keys() - manager._deferred_callables.keys():  # dropped elsewhere (a disabled button)
            del retired[file_id]

    remove_orphans_after_grace.grace_s = grace_s
    remove_orphans_after_grace.unpatched = unpatched
    setattr(MediaFileManager, _ORPHAN_PASS, remove_orphans_after_grace)
    return True


keep_retired_downloads()


EXPORT_WIDTH = 720


def chart_bytes(make_chart: Callable[[], alt.TopLevelMixin], fmt: str) -> bytes:
    """The chart ``make_chart`` builds, rendered as ``png`` or ``svg`` (through vl-convert).

    A chart that fits its container's width (``plot_height``) is given a page-like width, since a file has no container.
    """
    chart = make_chart()
    if chart.to_dict().get("autosize", {}).get("type") == "fit-x":
        chart = chart.properties(width=EXPORT_WIDTH)
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


def _download(label: str, data: Callable[[], bytes], name: str, details: tuple[object, ...], ext: str, mime: str, icon: str) -> None:
    """One deferred button: the file is named after ``name`` and the view ``details``, the button's key after ``name`` only."""
    st.download_button(label, data, f"{file_stem(name, *details)}.{ext}", mime, key=f"download_{name}.{ext}", icon=icon, on_click="ignore")


def chart_downloads(make_chart: Callable[[], alt.TopLevelMixin], name: str, *details: object) -> None:
    """PNG and SVG buttons in a row under a chart; ``make_chart`` runs only on a click.

    ``name`` says which chart it is (one per page), ``details`` the view: ``chart_downloads(make, "clusters", "umap", "layer12")``
    saves ``clusters_umap_layer12.png``.
    """
    with st.container(horizontal=True):
        _download("PNG image", partial(chart_bytes, make_chart, "png"), name, details, "png", "image/png", ":material/image:")
        _download("SVG image", partial(chart_bytes, make_chart, "svg"), name, details, "svg", "image/svg+xml", ":material/draw:")


def table_download(table: pd.DataFrame, name: str, *details: object) -> None:
    """A CSV button under a table, named like ``chart_downloads``."""
    _download("CSV table", partial(table_bytes, table), name, details, "csv", "text/csv", ":material/table:")
