"""The app shell: navigation over every page, the shared sidebar, links that restore a view, friendly errors.

AppTests run against the shipped cache of the default model; before it is committed they fall back to a
synthetic cache in the same format. The model is never loaded: ``emo_core.load_model`` is patched to fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import emo_core
from emo_core.defaults import EMBEDDED_NAME
from emo_core.results import available_caches, load_results
from tests.synthetic_cache import write_synthetic_cache
from ui.data import RESULTS_DIR_ENV, results_root
from ui.data import _bundle as model_cache
from ui.pages import PAGES as REGISTERED
from ui.part_view import default_part
from ui.run import BASELINE, KNOCKOUT_STRENGTH, MODE, PART

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = [page.script for page in REGISTERED]


@pytest.fixture(autouse=True)
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages showing saved results must never load the model."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise emo_core.ModelLoadError("Loading the model is switched off in this test.")

    monkeypatch.setattr(emo_core, "load_model", refuse)
    model_cache.clear()  # a model an earlier test loaded must not be served either


@pytest.fixture(autouse=True)
def results_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The shipped cache when it is there, else a synthetic one for the default model."""
    if EMBEDDED_NAME in available_caches():
        monkeypatch.delenv(RESULTS_DIR_ENV, raising=False)
        return
    root = tmp_path_factory.getbasetemp() / "synthetic_results"
    if not root.exists():
        write_synthetic_cache(root, EMBEDDED_NAME)
    monkeypatch.setenv(RESULTS_DIR_ENV, str(root))


def start(query: dict[str, str] | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params.update(query or {})
    return app.run()


def assert_clean(app: AppTest) -> None:
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]


def test_home_opens_with_the_shared_sidebar_and_a_link_to_the_view() -> None:
    app = start()
    assert_clean(app)
    assert app.title[0].value == "Emotion Circuit Explorer"
    assert {w.key for w in app.sidebar.children.values() if hasattr(w, "key")} >= {"model", "layer", "emotion", "settings_json"}
    assert app.query_params["model"] == EMBEDDED_NAME and app.query_params["emotion"] == "anger"
    assert app.query_params["layer"].isdigit()


def test_home_its_tour_and_clusters_open_without_importing_torch() -> None:
    """Torch is about 2 s of a cold start on 2 cores (more while the browser loads): Home, Clusters and the saved
    results they show must not need it (a first visit to Clusters right after Home took 3.8 s in the browser). In a
    fresh interpreter, since other tests here import it; the live pages' libraries, imported in the background after
    the first page, are held back."""
    script = textwrap.dedent(
        f"""
        import sys
        import ui.data
        from streamlit.testing.v1 import AppTest
        ui.data.PRELOAD_DELAY_S = 600
        app = AppTest.from_file({APP!r}, default_timeout=60).run()
        app.button(key="tour_start").click().run()
        assert not app.exception and app.title[0].value == "Emotion Circuit Explorer", app.exception
        app.switch_page("pages/views/clusters.py").run()
        assert not app.exception and app.title[0].value == "Emotion clusters", app.exception
        print(sorted(name for name in ("torch", "transformers") if name in sys.modules))
        """
    )
    root = Path(APP).parent
    env = {**os.environ, "PYTHONPATH": str(root), "EMO_PRELOAD_MODEL": "0"}
    run = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_a_link_restores_model_layer_emotion_and_selection() -> None:
    app = start({"model": EMBEDDED_NAME, "layer": "2", "emotion": "fear", "sel": "L1H0,L2N5"})
    assert_clean(app)
    assert app.session_state["layer"] == 2 and app.session_state["emotion"] == "fear"
    assert app.session_state["selection"] == ["L1H0", "L2N5"]
    assert app.query_params["sel"] == "L1H0,L2N5" and app.query_params["layer"] == "2"


def test_bad_link_values_give_messages_and_defaults() -> None:
    app = start({"model": "no-such-model", "layer": "abc", "emotion": "rage", "sel": "L1H0,garbage,L999N0"})
    assert_clean(app)
    warnings = " ".join(w.value for w in app.warning)
    for part in ("no-such-model", "'abc'", "'rage'", "'garbage'", "L999N0"):
        assert part in warnings
    assert app.session_state["model"] == EMBEDDED_NAME and app.session_state["emotion"] == "anger"
    assert app.session_state["selection"] == ["L1H0"]


def test_a_layer_beyond_the_model_is_clamped() -> None:
    app = start({"layer": "999"})
    assert_clean(app)
    assert any("Layer 999 does not exist" in w.value for w in app.warning)
    assert int(app.query_params["layer"]) == app.session_state["layer"] < 999


def test_the_tour_starts_at_step_one_and_every_step_opens_its_page_without_a_warning() -> None:
    app = start({"emotion": "fear"})
    app.button(key="tour_start").click().run()
    assert_clean(app)
    assert app.title[0].value == "Emotion Circuit Explorer" and "step 1 of 7" in app.markdown[0].value
    assert "*Always reply in fear*" in app.markdown[0].value
    results = load_results(EMBEDDED_NAME, results_root())
    strongest = default_part(results, "fear")
    expected = [("Emotion clusters", "step 2 of 7"), ("Emotion clusters", "step 3 of 7"), ("The fear circuit", "step 4 of 7")]
    expected += [
        ("The fear circuit", "step 5 of 7"),
        ("Switch parts off", "step 6 of 7"),
        (f"{strongest.token}: {strongest.label}", "step 7 of 7"),
    ]
    for title, step in expected:
        app.button(key="tour_next").click().run()
        assert not app.exception and all("could not be loaded" in e.value for e in app.error)  # the model is off in these tests
        assert not app.warning, [w.value for w in app.warning]  # was: "The results for 'None' are gone" on every page move
        assert app.title[0].value == title and step in app.markdown[0].value
        assert app.session_state["model"] == EMBEDDED_NAME and app.session_state["emotion"] == "fear"
        if step == "step 2 of 7":
            assert app.session_state["layer"] == 0
    prepared = results.prepared("fear")  # the tour's knockout is the prepared one, and its last step shows its strongest part
    assert strongest in prepared.parts and app.session_state[PART] == strongest.token and app.query_params["part"] == strongest.token
    assert app.session_state["selection"] == [c.token for c in prepared.parts] and "sel" in app.query_params
    assert app.session_state[MODE] == prepared.mode and app.session_state[BASELINE] == "steered"
    assert app.session_state[KNOCKOUT_STRENGTH] == prepared.baseline.strength


def test_show_me_buttons_move_between_pages_without_a_warning() -> None:
    app = start()
    for index in (1, 3, 2, 4, 5):
        app.switch_page(PAGES[0]).run()
        app.button(key=f"tour_show_{index}").click().run()
        assert not app.exception
        assert not app.warning, [w.value for w in app.warning]


def test_missing_cache_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    for page in PAGES:
        app = start()
        app.switch_page(page).run()
        assert not app.exception
        assert any("build one" in e.value for e in app.sidebar.error)
        assert any("needs saved results" in i.value for i in app.info)


def test_model_load_failure_is_shown_on_the_page() -> None:
    app = start()
    app.button(key="home_reply").click().run()
    assert not app.exception
    assert any("could not be loaded" in e.value for e in app.error)


def test_building_results_for_an_unknown_model_fails_politely(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build button reports the library's error (as a wrong Hub id raises it) in the sidebar."""
    pipeline = types.ModuleType("emo_core.pipeline")
    seen: list[str] = []

    def build(source: str, **kwargs: object) -> Path:
        seen.append(source)
        kwargs["progress"]("loading the model", 0, 1)
        raise emo_core.ModelLoadError(f"Could not load '{source}' from the Hugging Face Hub: check the id and your network connection.")

    pipeline.build = build
    monkeypatch.setitem(sys.modules, "emo_core.pipeline", pipeline)
    app = start()
    app.text_input(key="build_source").input("no-such-org/no-such-model").run()
    assert any("10 to 15 minutes" in c.value for c in app.sidebar.caption)
    app.button(key="build_go").click().run()
    assert not app.exception and seen == ["no-such-org/no-such-model"]
    assert any("check the id" in e.value for e in app.sidebar.error), [e.value for e in app.error]
    assert app.session_state["model"] == EMBEDDED_NAME
