"""Properties that protect the numbers (issue 22, item 2): each test states what must be true and recomputes it on its own.

- A causal ranking is its effects tensor ordered as ``causal.py`` defines, for every emotion, kind, mode and baseline, and
  ``Results.ranked_parts`` is its top eligible parts.
- The reading's calibration puts plain replies at 0 and each emotion's steered replies at 1.
- A bootstrap interval is as wide as the normal theory says, and narrows with the square root of the sample.
- Every page setting written into a link is read back from it as the same value.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd
import pytest
import torch

import ui.run as run
from emo_core.baselines import CAUSAL_KINDS, LIVE_KINDS
from emo_core.causal import HARM_BOUND, OTHERS_WEIGHT
from emo_core.defaults import EMBEDDED_NAME
from emo_core.limits import MAX_NEW_TOKENS, MAX_SEED, MAX_STRENGTH
from emo_core.parts import KINDS, Component
from emo_core.reading import EmotionReading, calibration, emotion_contrast
from emo_core.results import Results, load_results
from emo_core.scenarios import EMOTIONS
from emo_core.stats import bootstrap_interval, difference_interval
from tests.synthetic_cache import synthetic_results
from ui.state import View, read_link

MODES = ("zero", "mean")
WIDTH = {"head": "n_heads", "neuron": "d_mlp"}
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval

# --- 1. A causal ranking is its effects tensor, ordered -------------------------------------------------------------


def _with_arrays(results: Results, arrays: dict[str, np.ndarray]) -> Results:
    """The same results with some arrays replaced (a fresh ``Cache``, so its torch view is made anew)."""
    return Results(results.folder, replace(results.cache, arrays={**results.cache.arrays, **arrays}))


def _changed(results: Results, tie: bool) -> Results:
    """The synthetic cache, changed so that every branch of the ranking is exercised.

    Its random harms are all far under the bound, so some parts get harms beyond it (either sign) and one sits just inside
    it; one harmful part gets the largest effects, so that it would rank first if the bound were not applied. With ``tie``,
    in every effects tensor one part copies an earlier part's effects for every emotion, so that the two tie exactly on own,
    others and score, and only the documented order (layer, then index) can separate them.
    """
    bound = HARM_BOUND * float(results.array("causal.harm.base")[0])
    arrays: dict[str, np.ndarray] = {}
    for kind in KINDS:
        for mode in MODES:
            harm = results.array(f"causal.harm.{kind}s.{mode}").copy()
            harm[0, 0], harm[1, -1], harm[2, 1], harm[-1, 0] = 2 * bound, -3 * bound, 0.9 * bound, 1.5 * bound
            arrays[f"causal.harm.{kind}s.{mode}"] = harm
            for baseline in CAUSAL_KINDS:
                name = f"causal.{baseline}.{kind}s.{mode}"
                effects = results.array(name).copy()
                effects[:, -1, 0] = np.abs(effects[:, -1, 0]) + 5.0
                if tie:
                    effects[:, -1, 1] = effects[:, 0, 1]
                arrays[name] = effects
    return _with_arrays(results, arrays)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return synthetic_results(tmp_path_factory.mktemp("ranked"))


@pytest.fixture(scope="module")
def ranked(synthetic: Results) -> Results:
    """Harmful parts, a harmful part that would otherwise rank first, and an exact tie (``_changed``)."""
    return _changed(synthetic, tie=True)


@pytest.fixture(scope="module")
def untied(synthetic: Results) -> Results:
    """Harmful parts as in ``ranked``, without the exact tie."""
    return _changed(synthetic, tie=False)


def _expected_order(results: Results, emotion: str, kind: str, mode: str, baseline: str) -> pd.DataFrame:
    """The ranking as ``causal.py`` defines it, recomputed with plain loops in float64 from the cache's raw arrays."""
    effects = results.array(f"causal.{baseline}.{kind}s.{mode}").astype(np.float64)  # [E, L, units]
    harm = results.array(f"causal.harm.{kind}s.{mode}").astype(np.float64)
    base = float(results.array("causal.harm.base")[0])
    e = EMOTIONS.index(emotion)
    n_emotions, n_layers, width = effects.shape
    rows = []
    for layer in range(n_layers):
        for index in range(width):
            own = effects[e, layer, index]
            others = sum(effects[f, layer, index] for f in range(n_emotions) if f != e) / (n_emotions - 1)
            eligible = abs(harm[layer, index]) <= HARM_BOUND * base
            score = own - OTHERS_WEIGHT * max(others, 0.0) if eligible else -math.inf
            rows.append((layer, index, own, others, harm[layer, index], score, eligible))
    # eligible first, then score descending, then own descending, then the order of the grid (layer, index)
    rows.sort(key=lambda r: (not r[6], -r[5], -r[2], r[0], r[1]))
    return pd.DataFrame(rows, columns=["layer", kind, "own", "others", "harm", "score", "eligible"])


@pytest.mark.parametrize("baseline", CAUSAL_KINDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_emotions_causal_ranking_is_its_effects_ordered_by_specific_harmless_drop(
    ranked: Results, kind: str, mode: str, baseline: str
) -> None:
    """For every emotion (not only the first), the ranking lists every part once, in the order ``causal.py`` defines:
    eligible parts by ``own - OTHERS_WEIGHT * max(others, 0)`` descending, then the harmful ones (``|harm|`` over
    ``HARM_BOUND`` of the base loss) with ``eligible`` False; ``own`` is the emotion's slice of the effects and ``others``
    the mean of the other emotions' slices."""
    width = ranked.shape[WIDTH[kind]]
    for emotion in EMOTIONS:
        got = ranked.causal_ranking(emotion, kind, mode, baseline)
        want = _expected_order(ranked, emotion, kind, mode, baseline)
        assert len(got) == ranked.n_layers * width, emotion
        assert list(zip(got["layer"], got[kind], strict=True)) == list(zip(want["layer"], want[kind], strict=True)), emotion
        assert got["eligible"].tolist() == want["eligible"].tolist(), emotion
        assert not got["eligible"].all() and got["eligible"].any(), "the fixture must exercise both kinds of part"
        for column in ("own", "others", "harm", "score"):
            np.testing.assert_allclose(got[column].to_numpy(np.float64), want[column].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=emotion)


@pytest.mark.parametrize("kind", KINDS)
def test_ranked_parts_are_the_top_eligible_parts_of_the_ranking(untied: Results, kind: str) -> None:
    """``ranked_parts`` (what knockouts switch off) names the first ``k`` eligible parts of the steered, mean-ablation
    ranking for every emotion and every ``k``, never a harmful part, and with ``excluded`` the first ``k`` outside it.

    (Scores without exact ties here; ``test_on_tied_scores_ranked_parts_follow_the_shipped_tables_order`` has ties.)"""
    for emotion in EMOTIONS:
        table = _expected_order(untied, emotion, kind, "mean", "steered")
        eligible = table[table["eligible"]]
        order = [Component(kind, int(layer), int(index)) for layer, index in zip(eligible["layer"], eligible[kind], strict=True)]
        for k in (1, 2, 5, len(order), len(order) + 3):
            assert untied.ranked_parts(emotion, kind, k) == order[:k], (emotion, k)
        excluded = frozenset(order[1:4:2])
        assert untied.ranked_parts(emotion, kind, 4, excluded) == [c for c in order if c not in excluded][:4], emotion


def test_on_tied_scores_ranked_parts_follow_the_shipped_tables_order() -> None:
    """The shipped heads of the last layer all score exactly 0 for every emotion: every top k of ``ranked_parts`` is still
    the first k eligible rows of the ranked table (a top-k that broke ties its own way named other heads from k = 69)."""
    shipped = load_results(EMBEDDED_NAME)
    for emotion in EMOTIONS:
        table = shipped.causal_ranking(emotion, "head")
        eligible = table[table["eligible"]]
        order = [Component("head", int(layer), int(index)) for layer, index in zip(eligible["layer"], eligible["head"], strict=True)]
        assert len(set(eligible["score"])) < len(order)  # there are ties to break
        for k in range(1, len(order) + 1):
            assert shipped.ranked_parts(emotion, "head", k) == order[:k], (emotion, k)


@pytest.mark.parametrize("kind", KINDS)
def test_swapping_two_emotions_effects_swaps_their_rankings(ranked: Results, kind: str) -> None:
    """A ranking belongs to its emotion: exchanging two emotions' slices of the effects exchanges their rankings (and their
    top parts) and leaves every other emotion's ranking as it was."""
    name = f"causal.steered.{kind}s.mean"
    for a, b in ((0, 1), (2, 5), (3, 4)):
        effects = ranked.array(name).copy()
        effects[[a, b]] = effects[[b, a]]
        swapped = _with_arrays(ranked, {name: effects})
        for e, emotion in enumerate(EMOTIONS):
            source = EMOTIONS[{a: b, b: a}.get(e, e)]
            got, want = swapped.causal_ranking(emotion, kind), ranked.causal_ranking(source, kind)
            assert list(zip(got["layer"], got[kind], strict=True)) == list(zip(want["layer"], want[kind], strict=True)), (a, b, emotion)
            np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5, atol=1e-6)
            assert swapped.ranked_parts(emotion, kind, 3) == ranked.ranked_parts(source, kind, 3), (a, b, emotion)


# --- 2. Calibration: plain replies read 0, each emotion's steered replies read 1 -------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrated_reading_is_0_on_plain_rows_and_1_on_each_emotions_steered_rows(seed: int) -> None:
    """States are built so that their contrast is known: with orthonormal emotion directions, a state ``sum_e p_e u_e`` (plus
    a part orthogonal to every direction, which the reading must ignore) projects to ``p_e`` on emotion ``e``, so its contrast
    is ``p_e - mean_{f != e} p_f``. Whatever the random projections, calibrating on the plain and steered rows makes the
    reading average exactly 0 over the plain rows for every emotion and 1 over emotion ``e``'s steered rows on ``e``, and
    every reading is the affine map ``(contrast - zero) / (one - zero)`` of the contrast built in."""
    gen = torch.Generator().manual_seed(seed)
    n_emotions, n_layers, d = len(EMOTIONS), 3, 10
    basis = torch.linalg.qr(torch.randn(n_layers, d, d, generator=gen, dtype=torch.float64)).Q  # [k, d, d], orthonormal columns
    units = basis[:, :, :n_emotions].permute(2, 0, 1).contiguous()  # [E, k, d]
    spare = basis[:, :, n_emotions:]  # [k, d, d - E] orthogonal to every direction

    def rows(n: int, lift: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` states and their built-in contrasts; ``lift`` raises one emotion's projections (a steered row)."""
        p = torch.randn(n, n_layers, n_emotions, generator=gen, dtype=torch.float64)
        if lift is not None:
            p[..., lift] += 2.0 + torch.rand(n, n_layers, generator=gen, dtype=torch.float64)
        noise = torch.randn(n, n_layers, d - n_emotions, generator=gen, dtype=torch.float64) * 3
        states = torch.einsum("nke,ekd->nkd", p, units) + torch.einsum("nkj,kdj->nkd", noise, spare)
        others = (p.sum(dim=-1, keepdim=True) - p) / (n_emotions - 1)
        return states, (p - others).mean(dim=1)  # the contrast averaged over the reading's layers

    plain, plain_contrast = rows(11, None)
    steered = {emotion: rows(7 + e, e) for e, emotion in enumerate(EMOTIONS)}  # group sizes differ on purpose
    torch.testing.assert_close(emotion_contrast(plain, units).double(), plain_contrast, rtol=1e-5, atol=1e-5)

    zero, one = calibration(emotion_contrast(plain, units), {emotion: emotion_contrast(s, units) for emotion, (s, _) in steered.items()})
    reading = EmotionReading(tuple(range(n_layers)), units, zero, one)
    torch.testing.assert_close(reading(plain).mean(dim=0), torch.zeros(n_emotions), atol=1e-5, rtol=0, check_dtype=False)
    for e, emotion in enumerate(EMOTIONS):
        states, contrast = steered[emotion]
        assert float(reading(states)[:, e].mean()) == pytest.approx(1.0, abs=1e-5), emotion
        affine = (contrast - zero.double()) / (one.double() - zero.double())
        torch.testing.assert_close(reading(states).double(), affine, rtol=1e-4, atol=1e-4)


# --- 3. A bootstrap interval has the width theory gives ---------------------------------------------------------------


def _width(interval: list[float]) -> float:
    low, high = interval
    return high - low


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_bootstrap_interval_of_a_mean_has_the_normal_width_and_narrows_with_root_n(sigma: float) -> None:
    """On 400 normal draws the 95% interval of the mean is ``2 * 1.96 * sigma / sqrt(400)`` wide (within 15%), holds the
    sample mean, and is about half as wide (1.7x to 2.3x) on a sample four times larger."""
    rng = np.random.default_rng(7)
    small, large = rng.normal(3.0, sigma, 400), rng.normal(3.0, sigma, 1600)
    narrow, wide = bootstrap_interval(large, 2000, seed=1), bootstrap_interval(small, 2000, seed=1)
    for sample, interval in ((small, wide), (large, narrow)):
        theory = 2 * Z95 * sigma / math.sqrt(len(sample))
        assert _width(interval) == pytest.approx(theory, rel=0.15), (len(sample), interval)
        assert interval[0] < sample.mean() < interval[1]
    assert 1.7 < _width(wide) / _width(narrow) < 2.3


def test_unpaired_difference_interval_has_the_width_of_two_independent_means() -> None:
    """Two independent samples of different spread and size: the interval of ``mean(top) - mean(control)`` is
    ``2 * 1.96 * sqrt(s1^2/n1 + s2^2/n2)`` wide (within 15%), holds the observed difference, and halves (1.7x to 2.3x) when
    both samples are four times larger."""
    rng = np.random.default_rng(11)
    sizes = {"small": (400, 300), "large": (1600, 1200)}
    widths = {}
    for name, (n1, n2) in sizes.items():
        top, control = rng.normal(1.0, 1.0, n1), rng.normal(0.2, 2.0, n2)
        interval = difference_interval(top, control, 2000, seed=3)
        theory = 2 * Z95 * math.sqrt(top.var(ddof=1) / n1 + control.var(ddof=1) / n2)
        assert _width(interval) == pytest.approx(theory, rel=0.15), (name, interval)
        assert interval[0] < top.mean() - control.mean() < interval[1]
        widths[name] = _width(interval)
    assert 1.7 < widths["small"] / widths["large"] < 2.3


def test_paired_difference_interval_follows_the_spread_of_the_differences() -> None:
    """Paired samples that share a large per-prompt part: the paired interval is as wide as the differences' own spread
    gives (``2 * 1.96 * sd(d) / sqrt(n)``, within 15%), far narrower than treating the samples as independent would give,
    and it holds the mean difference."""
    rng = np.random.default_rng(5)
    shared = rng.normal(0.0, 3.0, 400)  # what a prompt does to both readings
    top, control = shared + rng.normal(0.5, 0.4, 400), shared + rng.normal(0.0, 0.3, 400)
    paired = difference_interval(top, control, 2000, seed=2, paired=True)
    unpaired = difference_interval(top, control, 2000, seed=2)
    differences = top - control
    assert _width(paired) == pytest.approx(2 * Z95 * differences.std(ddof=1) / math.sqrt(400), rel=0.15), paired
    assert paired[0] < differences.mean() < paired[1]
    assert _width(paired) < _width(unpaired) / 4


# --- 4. Every page setting round-trips through the link ---------------------------------------------------------------


def _scenario_keys() -> list[str]:
    keys = list(run.scenario_by_key())
    return [keys[1], keys[-1]]  # a training and an evaluation scenario


# Valid values other than the default for every run setting: a setting added to ``PAGE_KEYS`` without a value here fails
# ``test_every_run_setting_has_link_values_to_check`` until it gets values (and a reader to read them back).
SAMPLES: dict[str, list[object]] = {
    run.SCENARIO: _scenario_keys(),
    run.TEXT: ["My flight was cancelled & the desk said = 'wait'.\nNow I'm at gate #4, 50% sure of anything… 😶"],
    run.SAMPLE: [True],
    run.SEED: [1, 12345, MAX_SEED],
    run.TOKENS: [run.MIN_TOKENS, 24, MAX_NEW_TOKENS],
    run.BASELINE: [kind for kind in LIVE_KINDS if kind != run.DEFAULTS[run.BASELINE]],
    run.KNOCKOUT_METHOD: [m for m in run.KNOCKOUT_METHODS if m != run.DEFAULTS[run.KNOCKOUT_METHOD]],
    run.MODE: [m for m in run.MODES if m != run.DEFAULTS[run.MODE]],
    run.STEER_METHOD: [m for m in run.STEER_METHODS if m != run.DEFAULTS[run.STEER_METHOD]],
    run.STRENGTH: [0.0, 0.05, 1.25, 2.35, MAX_STRENGTH],
    run.KNOCKOUT_STRENGTH: [0.0, 0.05, 1.5, 3.7, MAX_STRENGTH],
    run.CLASSROOM: [False],
    run.PART: ["L3H1", "L0N0", "L27N1535"],
}


class _Session(dict):
    """A stand-in for ``st.session_state``: what ``run_query`` reads (``get``)."""


def _through_address_bar(params: dict[str, str]) -> dict[str, str]:
    """The query parameters as a browser hands them back: encoded into a URL's query string and decoded again."""
    return dict(parse_qsl(urlencode(params), keep_blank_values=True, strict_parsing=True))


def _written(monkeypatch: pytest.MonkeyPatch, page: str, state: dict[str, object]) -> dict[str, str]:
    """``run_query(page)`` for a session holding ``state`` (the defaults elsewhere), as the address bar carries it."""
    monkeypatch.setattr(run, "st", SimpleNamespace(session_state=_Session({**run.DEFAULTS, **state})))
    return _through_address_bar(run.run_query(page))


def _read_back(params: dict[str, str]) -> dict[str, object]:
    found, problems = run.read_run_link(params)
    assert problems == [], (params, problems)
    return found


def test_every_run_setting_has_link_values_to_check() -> None:
    """Every setting a page keeps in its link has a default, a parameter name and (here) valid non-default values, and no
    two settings of one page share a parameter (one would overwrite the other)."""
    for page, keys in run.PAGE_KEYS.items():
        assert set(keys) <= set(run.DEFAULTS) and set(keys) <= set(run.PARAMS), page
        assert len({run.PARAMS[key] for key in keys}) == len(keys), page
        for key in keys:
            assert SAMPLES.get(key), f"no link values to check for the {page} page's setting {key!r}"
            assert all(value != run.DEFAULTS[key] for value in SAMPLES[key]), key


@pytest.mark.parametrize("page", sorted(run.PAGE_KEYS))
def test_each_page_setting_written_to_the_link_reads_back_as_the_same_value(monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    """For every setting the page keeps and every valid non-default value of it, the page's link (``run_query``) read by
    the link reader (``read_run_link``) gives that value back, without a complaint, and leaves the page's other settings at
    their defaults (a setting the reader does not name is the default when the session is seeded)."""
    for key in run.PAGE_KEYS[page]:
        for value in SAMPLES[key]:
            params = _written(monkeypatch, page, {key: value})
            assert run.PARAMS[key] in params, (page, key, value)
            found = _read_back(params)
            for other in run.PAGE_KEYS[page]:
                expected = value if other == key else run.DEFAULTS[other]
                assert found.get(other, run.DEFAULTS[other]) == expected, (page, key, value, other, params)


@pytest.mark.parametrize("page", sorted(run.PAGE_KEYS))
@pytest.mark.parametrize("typed", [False, True])
def test_a_page_with_every_setting_changed_reads_back_whole(monkeypatch: pytest.MonkeyPatch, page: str, typed: bool) -> None:
    """All of a page's settings changed at once come back together: with a scenario picked (the typed text is then not the
    scenario and stays out of the link) or with a typed scenario (the picked one empty)."""
    state = {key: SAMPLES[key][-1] for key in run.PAGE_KEYS[page]}
    if typed:
        state[run.SCENARIO] = ""
    found = _read_back(_written(monkeypatch, page, state))
    for key in run.PAGE_KEYS[page]:
        if key == run.TEXT and not typed:
            assert key not in found
            continue
        assert found.get(key, run.DEFAULTS[key]) == state[key], (page, key)


VIEWS = [
    View("HuggingFaceTB/SmolLM2-135M-Instruct", 0, EMOTIONS[0]),
    *(View("Qwen/Qwen2.5-0.5B-Instruct", 7 + e, emotion, ("L3H1", "L10N123", f"L{e}N{e}")) for e, emotion in enumerate(EMOTIONS)),
    View("a local/folder, with=odd & chars", 29, "disgust", ("L0H0",)),
]


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: f"{view.emotion}-{view.layer}")
def test_the_view_written_to_the_link_reads_back_as_the_same_view(view: View) -> None:
    """Model, layer, emotion and selection written by ``View.query`` are read back by ``read_link`` as the same values,
    without a complaint; an empty selection stays out of the link and reads back as none."""
    models = ["SmolLM2-135M-Instruct", view.model]
    found, problems = read_link(_through_address_bar(view.query()), models)
    assert problems == []
    again = View(found["model"], found["layer"], found["emotion"], tuple(found.get("selection", ())))
    assert again == view


@pytest.mark.parametrize("page", sorted(run.PAGE_KEYS))
def test_view_and_run_settings_share_one_link_without_overwriting_each_other(monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    """A page writes the view and its run into one link (``write_link``): no run parameter reuses a view parameter's name,
    and each reader gets its own settings back from the combined link."""
    view = VIEWS[3]
    state = {key: SAMPLES[key][0] for key in run.PAGE_KEYS[page]}
    run_params = _written(monkeypatch, page, state)
    assert not set(view.query()) & set(run_params)
    combined = _through_address_bar({**view.query(), **run_params})
    found, problems = read_link(combined, [view.model])
    assert problems == [] and (found["model"], found["layer"], found["emotion"]) == (view.model, view.layer, view.emotion)
    assert tuple(found["selection"]) == view.selection
    assert _read_back(combined) == _read_back(run_params)


def test_the_sample_typed_scenario_is_one_the_app_accepts() -> None:
    """The typed scenario used above passes ``check_text``, so a failure of the round trip is the link's, not the sample's."""
    assert run.check_text(SAMPLES[run.TEXT][0]) is None
