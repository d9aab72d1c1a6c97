"""The dashboard's pages, listed once: the entry point routes over them, the tour links to them, the tests open them."""

from __future__ import annotations

from dataclasses import dataclass

GOTO = "_goto_page"  # the session key of a page to open on the next run (``tour.follow`` opens it)


@dataclass(frozen=True)
class PageSpec:
    """One page: its script, how the menu names it, its address, and whether the sidebar's layer changes what it shows."""

    script: str
    title: str
    icon: str
    url_path: str = ""
    uses_layer: bool = True
    run: str | None = None  # the live-run settings it keeps in the link (``ui.run.PAGE_KEYS``)

    @property
    def is_home(self) -> bool:
        return not self.url_path


HOME = PageSpec("pages/views/home.py", "Home", ":material/home:", uses_layer=False)
CLUSTERS = PageSpec("pages/views/clusters.py", "Clusters", ":material/scatter_plot:", "clusters")
CIRCUIT = PageSpec("pages/views/circuit.py", "Circuit", ":material/hub:", "circuit", uses_layer=False)
KNOCKOUT = PageSpec("pages/views/knockout.py", "Knockout", ":material/power_settings_new:", "knockout", run="knockout")
STEER = PageSpec("pages/views/steer.py", "Steer", ":material/tune:", "steer", uses_layer=False, run="steer")
PART = PageSpec("pages/views/part.py", "One part", ":material/zoom_in:", "part", uses_layer=False, run="part")
PAGES: tuple[PageSpec, ...] = (HOME, CLUSTERS, CIRCUIT, KNOCKOUT, STEER, PART)


def by_title(title: str) -> PageSpec:
    """The page the menu calls ``title``."""
    return next(page for page in PAGES if page.title == title)
