"""The cache's accessors: each emotion and layer gets its own slice, out-of-range input gets one sentence, and an older
cache names its rebuild. Checked against the stored tensors and tables of a synthetic cache, every emotion and layer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emo_core.causal import HARM_BASE, causal_scores, effect_name, harm_name, others_mean
from emo_core.parts import Component, Ranked, top_parts
from emo_core.results import CORPUS_TENSORS, REPORT, Results, available_caches, cache_folder, load_results
from emo_core.scenarios import EMOTIONS
from emo_core.store import CacheError
from tests.synthetic_cache import SHAPE, write_synthetic_cache

MODEL = "synthetic/results-model"
LAYERS = SHAPE["n_layers"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_synthetic_cache(root, MODEL)
    return root


@pytest.fixture
def results(root: Path) -> Results:
    return load_results(MODEL, root)  # fresh each test: some tests remove entries as an older cache would lack them


def test_each_emotion_gets_its_own_slice_of_every_per_emotion_tensor(results: Results) -> None:
    accessors = {
        "head_scores": results.head_scores,
        "neuron_scores": results.neuron_scores,
        "sublayer_importance": results.sublayer_importance,
        "cross_layer": results.cross_layer,
    }
    for e, emotion in enumerate(EMOTIONS):
        assert results.emotion_index(emotion) == e
        for name, accessor in accessors.items():
            assert torch.equal(accessor(emotion), results.tensor(name)[e]), (name, emotion)
    assert results.emotions == EMOTIONS and results.n_layers == LAYERS and results.shape == SHAPE
    for accessor in [results.emotion_index, *accessors.values()]:
        with pytest.raises(ValueError) as error:
            accessor("joy")
        assert str(error.value) == f"Unknown emotion 'joy'; choose one of {', '.join(EMOTIONS)}."


def test_layers_outside_the_model_get_one_sentence_naming_the_range(results: Results) -> None:
    assert [results.check_layer(layer) for layer in range(LAYERS)] == list(range(LAYERS))
    for bad in (-1, LAYERS, LAYERS + 7):
        for call in (results.check_layer, results.map_points, results.cosine_matrix, results.nearest):
            with pytest.raises(ValueError) as error:
                call(bad)
            assert str(error.value) == f"Layer {bad} is out of range; this model has layers 0 to {LAYERS - 1}."


def test_map_points_are_the_prompts_with_that_layers_map(results: Results) -> None:
    prompts = results.table("prompts")
    for method in ("umap", "pca"):
        for layer in range(LAYERS):
            points = results.map_points(layer, method)
            xy = results.array(method)[layer]
            assert np.array_equal(points["x"], xy[:, 0]) and np.array_equal(points["y"], xy[:, 1])
            pd.testing.assert_frame_equal(points.drop(columns=["x", "y"]), prompts)
    assert results.map_points(1).equals(results.map_points(1, "umap"))
    with pytest.raises(ValueError, match=r"^Unknown map 'tsne'; choose umap or pca\.$"):
        results.map_points(0, "tsne")


def test_a_state_with_a_mapped_prompts_coordinates_is_placed_on_that_prompt(results: Results) -> None:
    for method in ("umap", "pca"):
        for layer in (0, LAYERS - 1):
            directions = results.tensor("directions.resid_post")[:, layer].double()  # [E, d]: square in the synthetic cache
            coordinates = torch.as_tensor(results.array("map.coordinates")[layer][[3, 11]]).double()  # [2, E]
            states = results.tensor("map.centre")[layer].double() + torch.linalg.solve(directions, coordinates.T).T
            placed = results.place_states(states.float(), layer, method)
            np.testing.assert_allclose(placed, results.array(method)[layer][[3, 11]], atol=1e-3)
    with pytest.raises(ValueError, match="out of range"):
        results.place_states(torch.zeros(1, SHAPE["d_model"]), LAYERS)


def test_the_cosine_table_and_nearest_emotions_are_that_layers(results: Results) -> None:
    nearest = results.table("nearest")
    for layer in range(LAYERS):
        table = results.cosine_matrix(layer)
        assert list(table.index) == list(EMOTIONS) == list(table.columns)
        assert np.array_equal(table.to_numpy(), results.array("cosines")[layer])
        mine = results.nearest(layer)
        assert (mine["layer"] == layer).all() and list(mine.index) == list(range(len(EMOTIONS)))
        pd.testing.assert_frame_equal(mine, nearest[nearest["layer"] == layer].reset_index(drop=True))


def test_separation_lists_every_layer_with_its_silhouette_and_probe_accuracy(results: Results) -> None:
    table = results.separation_by_layer()
    assert list(table.columns) == ["layer", "silhouette", "probe_accuracy"] and list(table["layer"]) == list(range(LAYERS))
    assert np.array_equal(table["silhouette"], results.array("separation"))
    assert np.array_equal(table["probe_accuracy"], results.array("probe_accuracy"))


def test_top_heads_and_neurons_are_ranked_best_first_over_the_whole_model(results: Results) -> None:
    for emotion in EMOTIONS:
        for kind, table, scores in (
            ("head", results.top_heads(emotion), results.head_scores(emotion)),
            ("neuron", results.top_neurons(emotion, 5), results.neuron_scores(emotion)),
        ):
            assert list(table.columns) == ["layer", kind, "score"]
            best = top_parts(scores, kind, len(table))
            assert [(c.layer, c.index) for c, _ in best] == list(zip(table["layer"], table[kind], strict=True))
            assert np.allclose(table["score"], [value for _, value in best])
        assert len(results.top_heads(emotion)) == LAYERS * SHAPE["n_heads"] and len(results.top_neurons(emotion, 5)) == 5
        assert results.top_heads(emotion, 2).equals(results.top_heads(emotion).head(2))


def test_causal_rankings_are_each_emotions_row_of_the_stored_effects(results: Results) -> None:
    for kind, width in (("head", SHAPE["n_heads"]), ("neuron", SHAPE["d_mlp"])):
        for mode in ("zero", "mean"):
            for baseline in ("steered", "asked", "continued"):
                own = results.tensor(effect_name(baseline, kind, mode))
                assert torch.equal(results.causal_effects(baseline, kind, mode), own)
                harm = results.tensor(harm_name(kind, mode))
                base = float(results.tensor(HARM_BASE)[0])
                assert results.causal_harm(kind, mode)[1] == base and torch.equal(results.causal_harm(kind, mode)[0], harm)
                scores = causal_scores(own, harm, base)
                assert torch.equal(results.causal_scores(baseline, kind, mode), scores)
                for e, emotion in enumerate(EMOTIONS):
                    table = results.causal_ranking(emotion, kind, mode, baseline)
                    assert len(table) == LAYERS * width
                    first = table.iloc[0]
                    layer, index = int(first["layer"]), int(first[kind])
                    assert float(first["own"]) == pytest.approx(float(own[e, layer, index]))
                    assert float(first["others"]) == pytest.approx(float(others_mean(own)[e, layer, index]))
                    assert float(first["score"]) == pytest.approx(float(scores[e].max()))
                    assert results.causal_ranking(emotion, kind, mode, baseline, k=3).equals(table.head(3))
    for bad in (("shouted", "neuron", "mean"), ("steered", "layer", "mean"), ("steered", "neuron", "half")):
        with pytest.raises(ValueError, match="choose a baseline of steered, asked, continued, head or neuron, zero or mean"):
            results.causal_effects(*bad)


def test_ranked_parts_leave_out_the_excluded_and_still_give_k(results: Results) -> None:
    for emotion in EMOTIONS:
        for kind in ("head", "neuron"):
            scores = results.causal_scores("steered", kind, "mean")[results.emotion_index(emotion)]
            ranked = [c for c, _ in top_parts(scores, kind)]
            assert results.ranked_parts(emotion, kind, 4) == ranked[:4]
            excluded = frozenset(ranked[:2])
            assert results.ranked_parts(emotion, kind, 4, excluded) == ranked[2:6]
            assert results.named_parts(emotion, Ranked("causal", kind, 3), excluded) == ranked[2:5]
        assert results.named_parts(emotion, Ranked("circuit")) == [Component("head", 1, 1), Component("neuron", 2, 1)]


def test_a_cache_without_causal_rankings_ranks_by_the_papers_scores(results: Results) -> None:
    for kind in ("head", "neuron"):
        for mode in ("zero", "mean"):
            del results.cache.arrays[harm_name(kind, mode)]
    with pytest.raises(CacheError, match="has no causal rankings") as error:
        results.causal_harm("neuron", "mean")
    assert results.rebuild in str(error.value)
    for emotion in EMOTIONS:
        assert results.ranked_parts(emotion, "head", 3) == [c for c, _ in top_parts(results.head_scores(emotion), "head", 3)]
        assert results.ranked_parts(emotion, "neuron", 2) == [c for c, _ in top_parts(results.neuron_scores(emotion), "neuron", 2)]


def test_missing_entries_name_themselves_and_the_rebuild(results: Results) -> None:
    with pytest.raises(CacheError) as error:
        results.array("nothing.here")
    assert str(error.value) == f"The cache at {results.folder} has no 'nothing.here'; rebuild it with `{results.rebuild}`."
    with pytest.raises(CacheError) as error:
        results.table("nothing")
    assert str(error.value) == f"The cache at {results.folder} has no 'nothing' table; rebuild it with `{results.rebuild}`."
    del results.cache.arrays["cosines"]  # the torch view goes through the same check
    with pytest.raises(CacheError, match="has no 'cosines'; rebuild it"):
        results.tensor("cosines")


def test_a_neurons_top_sentences_are_its_stored_ones_per_emotion_best_first(results: Results) -> None:
    texts = results.table("corpus")["text"]
    k = results.array("corpus.top_index").shape[-1]
    for layer, index in ((0, 0), (LAYERS - 1, SHAPE["d_mlp"] - 1), (2, 5)):
        table = results.neuron_top_sentences(layer, index)
        assert list(table.columns) == ["emotion", "rank", "text", "activation"] and len(table) == len(EMOTIONS) * k
        for e, emotion in enumerate(EMOTIONS):
            mine = table[table["emotion"] == emotion]
            assert list(mine["rank"]) == list(range(1, k + 1))
            stored = results.array("corpus.top_index")[e, layer, index].astype(int)
            assert list(mine["text"]) == [texts[i] for i in stored]
            assert np.array_equal(mine["activation"], results.array("corpus.top_value")[e, layer, index])
    for bad in (-1, SHAPE["d_mlp"]):
        with pytest.raises(ValueError) as error:
            results.neuron_top_sentences(1, bad)
        assert str(error.value) == f"Neuron {bad} is out of range; layer 1 has neurons 0 to {SHAPE['d_mlp'] - 1}."


def test_every_missing_corpus_entry_is_named(results: Results) -> None:
    del results.cache.arrays[CORPUS_TENSORS[0]], results.cache.arrays[CORPUS_TENSORS[2]]
    with pytest.raises(CacheError, match=f"no corpus readings \\({CORPUS_TENSORS[0]}, {CORPUS_TENSORS[2]}; it predates them\\)"):
        results.layer_reading()


@pytest.mark.parametrize("missing", [*CORPUS_TENSORS, "corpus"])
def test_a_cache_that_predates_the_corpus_says_what_it_lacks_and_the_rebuild(results: Results, missing: str) -> None:
    if missing == "corpus":
        del results.cache.tables["corpus"]
    else:
        del results.cache.arrays[missing]
    for call in (lambda: results.neuron_top_sentences(0, 0), results.layer_reading):
        with pytest.raises(CacheError) as error:
            call()
        lacks = "the corpus table" if missing == "corpus" else missing
        assert str(error.value) == (
            f"The cache at {results.folder} has no corpus readings ({lacks}; it predates them); rebuild it with `{results.rebuild}`."
        )


def test_the_report_is_none_before_evaluate_read_when_there_and_named_when_damaged(root: Path, tmp_path: Path) -> None:
    shutil.copytree(cache_folder(MODEL, root), cache_folder(MODEL, tmp_path))
    assert load_results(MODEL, tmp_path).report is None
    path = cache_folder(MODEL, tmp_path) / REPORT
    path.write_text(json.dumps({"steering": {"circuit": 0.5}}))
    assert load_results(MODEL, tmp_path).report == {"steering": {"circuit": 0.5}}
    path.write_text("{not json")
    with pytest.raises(CacheError) as error:
        load_results(MODEL, tmp_path).report  # noqa: B018
    assert str(error.value) == f"The report {path} is damaged; rerun `python -m emo_core evaluate`."


def test_available_caches_lists_every_readable_cache_and_skips_the_rest(root: Path, tmp_path: Path) -> None:
    write_synthetic_cache(tmp_path, "b/second", n_skeletons=2)
    write_synthetic_cache(tmp_path, "a/first", n_skeletons=2)
    (tmp_path / "0-not-a-cache").mkdir()  # sorts first: an unreadable folder is skipped, not the end of the list
    (tmp_path / "stray.txt").write_text("x")
    assert available_caches(tmp_path) == ["a/first", "b/second"]
    assert available_caches(tmp_path / "nowhere") == []
    assert cache_folder("a/first", tmp_path).parent == tmp_path and cache_folder("a/first", tmp_path) != cache_folder("b/second", tmp_path)


def test_the_defaults_are_the_steered_baseline_neurons_and_mean_ablation(results: Results) -> None:
    assert torch.equal(results.causal_effects(), results.causal_effects("steered", "neuron", "mean"))
    assert torch.equal(results.causal_harm()[0], results.causal_harm("neuron", "mean")[0])
    assert torch.equal(results.causal_scores(), results.causal_scores("steered", "neuron", "mean"))
    assert results.causal_ranking("fear").equals(results.causal_ranking("fear", "neuron", "mean", "steered"))
    state = torch.zeros(1, SHAPE["d_model"])
    assert np.array_equal(results.place_states(state, 1), results.place_states(state, 1, "umap"))
    assert not np.array_equal(results.place_states(state, 1, "umap"), results.place_states(state, 1, "pca"))


def test_each_ablation_mode_is_scored_against_its_own_harm(results: Results) -> None:
    """A part that breaks the model only when zeroed is excluded from the zero-ablation ranking alone."""
    harm = results.cache.arrays[harm_name("neuron", "zero")].copy()
    harm[1, 2] = 5.0  # nats per token: far past any bound
    results.cache.arrays[harm_name("neuron", "zero")] = harm
    vars(results.cache).pop("tensors", None)  # the torch views are made again from the arrays
    zero, mean = results.causal_scores("steered", "neuron", "zero"), results.causal_scores("steered", "neuron", "mean")
    assert torch.isinf(zero[:, 1, 2]).all() and torch.isfinite(mean[:, 1, 2]).all()


def test_the_layer_reading_is_the_stored_calibration_and_separation(results: Results) -> None:
    reading = results.layer_reading()
    zero, one = results.tensor("layer_reading.calibration")
    assert torch.equal(reading.zero, zero.float()) and torch.equal(reading.one, one.float())
    assert torch.equal(reading.auc, results.tensor("layer_reading.auc").float())
    expression = results.tensor("expression.resid_post")
    assert reading.units.shape == expression.shape
    torch.testing.assert_close(reading.units, torch.nn.functional.normalize(expression.float(), dim=-1))


def _with_prepared(results: Results, rows: dict[str, dict]) -> Results:
    table = results.table("prepared").copy()
    for emotion, values in rows.items():
        for column, value in values.items():
            table.loc[table["emotion"] == emotion, column] = value
    results.cache.tables["prepared"] = table
    return results


def test_the_fluent_strength_is_the_prepared_baselines_when_it_steers_harder_by_the_same_method_and_passed(results: Results) -> None:
    tuned = {method: results.steering_settings(method, "anger")["strength"] for method in ("direction", "circuit")}
    assert tuned == {"direction": 1.0, "circuit": 1.0}
    _with_prepared(
        results,
        {
            "anger": {"strength": 2.5},
            "fear": {"strength": 0.5},
            "sadness": {"strength": 2.5, "carried": 0, "degenerate": 0.9},  # failed its checks
            "happiness": {"method": "circuit", "strength": 3.0},
        },
    )
    assert not results.prepared("sadness").eligible and results.prepared("anger").eligible
    assert results.fluent_strength("direction", "anger") == 2.5 and results.fluent_strength("circuit", "anger") == 1.0
    assert results.fluent_strength("direction", "fear") == 1.0
    assert results.fluent_strength("direction", "sadness") == 1.0
    assert results.fluent_strength("circuit", "happiness") == 3.0 and results.fluent_strength("direction", "happiness") == 1.0


def test_a_cache_without_prepared_knockouts_steers_at_the_tuned_strength_and_says_so(results: Results) -> None:
    del results.cache.tables["prepared"]
    assert results.fluent_strength("direction", "anger") == 1.0
    with pytest.raises(CacheError) as error:
        results.prepared("anger")
    assert str(error.value) == (
        f"The cache at {results.folder} has no prepared knockouts (it predates them); rebuild it with `{results.rebuild}`."
    )


def test_an_emotion_without_a_prepared_knockout_is_named_cut_to_forty_characters(results: Results) -> None:
    for asked, shown in (("rage", "rage"), ("x" * 60, "x" * 40)):
        with pytest.raises(CacheError) as error:
            results.prepared(asked)
        assert str(error.value) == f"The cache at {results.folder} has no prepared knockout for '{shown}'."
