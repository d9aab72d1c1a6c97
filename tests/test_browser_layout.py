"""On a 1024x768 projector nothing on the Steer, Circuit and Knockout pages is cut off, with the real built-in model.

Checked: every button, widget label, expander title, tab and metric (no text ellipsized or clipped), every table (all its
columns shown without scrolling sideways) and every chart (no text Vega cut short with '…' or drawn past the chart's
edge, legends included). Needs Chromium and Playwright (skipped without them); screenshots go to ``$SCREENSHOT_DIR`` when
set, else to pytest's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.live_app import BROWSER_ARGS, CHROMIUM, link_shows, settle

pytestmark = pytest.mark.slow  # a server, a real browser and the real model
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed", allow_module_level=True)

from tests.test_browser import CANVAS_TEXT_SPY  # noqa: E402  (after the skips: that module needs the same browser)

PROJECTOR = {"width": 1024, "height": 768}
TOKENS = 8  # short replies: the charts under them are what is checked

# Text that does not fit its box: an element that clips or ellipsizes its overflow and is narrower than its text. Elements
# a pixel or two wide are screen-reader text (Streamlit's hidden radio and checkbox inputs), not what a person sees.
CUT_TEXT = """() => {
  const problems = [];
  const labelled = ['button', '[data-testid=stWidgetLabel]', '[data-testid=stMetricLabel]', '[data-testid=stMetricValue]',
                    '[data-testid=stMetricDelta]', '[role=tab]', '[data-testid=stExpander] summary'].join(', ');
  for (const root of document.querySelectorAll(labelled)) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      const text = (el.innerText ?? el.textContent ?? '').trim();
      if (!text || el.getBoundingClientRect().width <= 2) continue;
      const style = getComputedStyle(el);
      const clips = style.textOverflow === 'ellipsis' || style.overflowX !== 'visible';
      if (clips && el.scrollWidth > el.clientWidth)
        problems.push(`'${text.slice(0, 80)}' is cut off (${el.scrollWidth} px of text in ${el.clientWidth} px)`);
    }
  }
  for (const table of document.querySelectorAll('[data-testid=stDataFrame]')) {
    const scroller = table.querySelector('.dvn-scroller');
    if (scroller && scroller.scrollWidth > scroller.clientWidth + 1) {
      const columns = [...table.querySelectorAll('[role=columnheader]')].map(h => h.textContent.trim()).filter(Boolean);
      problems.push(`the table (${columns.join(', ')}) hides columns: ${scroller.scrollWidth} px wide in ${scroller.clientWidth} px`);
    }
  }
  return [...new Set(problems)];
}"""
# For every chart: the texts Vega cut short with '…' (titles, axis and legend labels) or drew past the chart's edge, where
# they are clipped ('hap' for 'happiness'), each named by the chart's title. An SVG text's box includes its line height,
# so it may stick out a few pixels (sideways for a rotated axis title) with every letter inside.
CUT_CHART_TEXT = """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].map((chart, index) => {
  const problems = [], canvas = chart.querySelector('canvas'), svg = chart.querySelector('svg.marks');
  const title = svg?.querySelector('.role-title-text text')?.textContent || `chart ${index + 1}`;
  const check = (text, outside) => {
    if (text.endsWith('…')) problems.push(`${title}: '${text}' is cut short`);
    else if (outside) problems.push(`${title}: '${text}' runs past the chart's edge`);
  };
  if (canvas) for (const t of canvas.__texts || []) check(t.text, t.left < -1 || t.right > canvas.width + 1);
  if (svg) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      const outside = r.left < box.left - 4 || r.right > box.right + 4 || r.top < box.top - 4 || r.bottom > box.bottom + 4;
      if (r.width && getComputedStyle(t).opacity !== '0') check(t.textContent, outside);  // Vega hides overlapping labels
    }
  }
  if (!canvas && !svg) problems.push(`${title} is not drawn`);
  return problems;
}).flat()"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(server: str) -> object:
    """A 1024x768 browser tab that records the text Vega draws on canvases."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        tab = browser.new_page(viewport=PROJECTOR)
        tab.add_init_script(CANVAS_TEXT_SPY)
        yield tab
        browser.close()


def open_at(page: object, url: str, marker: str) -> None:
    page.goto(url)
    page.get_by_text(marker).first.wait_for(timeout=240_000)  # the first live page waits for the model to load
    settle(page)


def charts_drawn(page: object, count: int) -> None:
    """Wait until ``count`` charts are on the page and every one has drawn its text, then for the run to finish."""
    playwright.expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(count, timeout=120_000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')]
                 .every(c => c.querySelector('svg.marks text') || c.querySelector('canvas')?.__texts?.length)""",
        timeout=60_000,
    )
    settle(page)


def generate(page: object, replies_charts: int = 4) -> None:
    """Press Generate and wait for both replies' charts (the judge's bars and the reading under each)."""
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=stColumn] [data-testid=stVegaLiteChart]').length >= {replies_charts}",
        timeout=240_000,
    )
    settle(page)


def cut_off(page: object) -> list[str]:
    """Everything cut off now; a chart still fitting itself to its column overlaps for a moment, so the charts get up to
    20 s to settle while a real problem stays."""
    try:
        page.wait_for_function(f"({CUT_CHART_TEXT})().length === 0", timeout=20_000)
    except playwright.TimeoutError:
        pass
    return page.evaluate(CUT_TEXT) + page.evaluate(CUT_CHART_TEXT)


def shoot(page: object, path: Path) -> None:
    """The page from top to bottom, one screenful per file (Streamlit scrolls inside the page, so no full-page shot)."""
    main = page.get_by_test_id("stMain")
    screens = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=stMain]'); return Math.ceil(m.scrollHeight / m.clientHeight); }"
    )
    for screen in range(screens):
        main.evaluate(f"m => m.scrollTop = {screen} * m.clientHeight * 0.9")
        page.wait_for_timeout(300)
        page.screenshot(path=path.with_name(f"{path.stem}_{screen + 1}.png"))
    main.evaluate("m => m.scrollTop = 0")


def test_steer_page_fits_a_projector(server: str, page: object, shots: Path) -> None:
    open_at(page, f"{server}/steer?emotion=happiness&tokens={TOKENS}", "Reset to tuned")
    problems = []
    for method in ("through its circuit", "by asking", "along its direction"):  # each method's controls (strength button, caption)
        page.get_by_text(method, exact=True).click()
        settle(page)
        problems += page.evaluate(CUT_TEXT)
    generate(page)
    charts_drawn(page, 4)
    assert page.get_by_text("The judge's happiness probability went from").count() == 1  # the steered reply, judged
    shoot(page, shots / "layout_1024_steer.png")
    problems = list(dict.fromkeys(problems + cut_off(page)))
    assert problems == [], problems


def test_circuit_page_fits_a_projector(server: str, page: object, shots: Path) -> None:
    open_at(page, f"{server}/circuit?emotion=surprise", "Where the circuit lives")
    page.get_by_role("button", name="Select the surprise circuit").click()
    link_shows(page, "sel=")
    # One expander at a time, each open before the next click: opening the first moves the second down the page.
    for expander, inside in (
        ("Edit the selection one by one", "Selected heads and neurons"),
        ("Add any head or neuron", "Head or neuron number"),
    ):
        page.get_by_text(expander).click()
        page.get_by_text(inside).wait_for()
    page.get_by_text("Each cell compares the emotion's direction").wait_for()  # the page's last caption
    evaluated = page.get_by_text("python -m emo_core evaluate").count() == 0  # else no knockout curves yet
    charts_drawn(page, 5 if evaluated else 4)
    shoot(page, shots / "layout_1024_circuit.png")
    problems = cut_off(page)
    page.get_by_text("neurons", exact=True).first.click()  # the tables again, with neuron numbers
    settle(page)
    problems += cut_off(page)
    assert problems == [], problems


def test_knockout_page_fits_a_projector(server: str, page: object, shots: Path) -> None:
    open_at(page, f"{server}/knockout?emotion=disgust&tokens={TOKENS}&sel=L20H3,L21H4,L22N100", "Generate")
    page.get_by_text("Show the random set's reply as a third column").click()  # three narrow columns of charts
    settle(page)
    generate(page, replies_charts=6)
    shoot(page, shots / "layout_1024_knockout.png")
    problems = cut_off(page)
    assert problems == [], problems
