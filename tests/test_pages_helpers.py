"""The dashboard's pure helpers (ui/): link parsing, selection tokens, chart frames, sentences, charts and exports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from emo_core.parts import Component, circuit_components, describe, out_of_range, parse_token, parse_tokens
from emo_core.results import Results
from emo_core.scenarios import EMOTIONS
from tests.synthetic_cache import SHAPE, synthetic_results
from ui import builder, charts, frames, glossary, narrative
from ui.export import chart_bytes, file_stem, table_bytes
from ui.palette import EMOTION_COLORS
from ui.replies import highlighted

MODEL = "synthetic-model"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return synthetic_results(tmp_path_factory.mktemp("results"), MODEL)


def test_palette_follows_the_library_emotion_order() -> None:
    assert tuple(EMOTION_COLORS) == EMOTIONS


def test_component_tokens_round_trip_and_reject_garbage() -> None:
    head = Component("head", 12, 3)
    assert head.token == "L12H3" and parse_token("l12h3") == head
    assert parse_token("L10N123") == Component("neuron", 10, 123)
    with pytest.raises(ValueError, match="L12H3"):
        parse_token("head twelve")
    found, bad = parse_tokens(["L1H0, L1H0,x", "L2N5"])
    assert [c.token for c in found] == ["L1H0", "L2N5"] and bad == ["x"]


def test_out_of_range_names_the_problem() -> None:
    assert out_of_range(Component("head", 1, 2), 4, 3, 8) is None
    assert "layer 9" in out_of_range(Component("head", 9, 0), 4, 3, 8)
    assert "head 3" in out_of_range(Component("head", 1, 3), 4, 3, 8)
    assert out_of_range(Component("neuron", 1, 7), 4, 3, 8) is None


def test_map_frame_filters_and_changes_with_the_layer(results: Results) -> None:
    every = frames.map_frame(results, 0, "umap")
    assert len(every) == len(results.table("prompts")) and list(every.columns) == frames.MAP_COLUMNS
    negative = frames.map_frame(results, 0, "pca", valences=["negative"], themes=["work"])
    assert set(negative["valence"]) == {"negative"} and set(negative["theme"]) == {"work"}
    assert not every[["x", "y"]].equals(frames.map_frame(results, 1, "umap")[["x", "y"]])
    (x_low, x_high), (y_low, y_high) = frames.map_extent(results, "umap")
    maps = results.tensor("umap")
    assert x_low < float(maps[..., 0].min()) and x_high > float(maps[..., 0].max()) and y_low < y_high


def test_long_frames_have_one_row_per_cell(results: Results) -> None:
    n_layers, n_heads, d_mlp = SHAPE["n_layers"], SHAPE["n_heads"], SHAPE["d_mlp"]
    assert len(frames.cosine_frame(results.cosine_matrix(1))) == 36
    assert len(frames.separation_frame(results, 1)) == 2 * n_layers
    heads = frames.grid_frame(results.head_scores("anger"), "head")
    assert len(heads) == n_layers * n_heads
    cell = heads.loc[(heads["layer"] == 2) & (heads["head"] == 1), "score"].item()
    assert cell == pytest.approx(float(results.head_scores("anger")[2, 1]))
    top = frames.top_per_layer(results.neuron_scores("anger"), 3)
    assert len(top) == 3 * n_layers and top.groupby("layer")["rank"].max().eq(3).all()
    best = top[(top.layer == 0) & (top["rank"] == 1)]
    assert best["neuron"].item() == int(results.neuron_scores("anger")[0].argmax()) and d_mlp > 3
    parts = frames.sublayer_frame(results.sublayer_importance("anger"))
    assert set(parts["part"]) == {"attention", "MLP"}
    cross = frames.cross_layer_frame(results.cross_layer("anger"))
    assert len(cross) == (2 * n_layers) ** 2 and cross["from"].iloc[0] == "Attn 0"
    ranked = frames.ranked_table(results.top_heads("anger", 3))
    assert list(ranked["rank"]) == [1, 2, 3] and list(ranked.columns) == ["rank", "layer", "head", "score"]


def test_sentences_state_what_the_charts_show(results: Results) -> None:
    cosines = results.cosine_matrix(2)
    row = cosines.loc["anger"].drop("anger")
    sentence = narrative.closeness_sentence(cosines, 2, "anger")
    assert f"closest to **{row.idxmax()}**" in sentence and f"furthest from **{row.idxmin()}**" in sentence
    assert narrative.best_layer(results) == SHAPE["n_layers"] - 1  # the synthetic separation grows with depth
    assert "clearest at layer 3" in narrative.separation_sentence(results, 0)
    assert "clearest here" in narrative.separation_sentence(results, 3)
    circuit = narrative.circuit_sentence(results, "anger")
    assert "**anger circuit** is 1 head and 1 neuron in layers 1–2" in circuit  # the circuit's own layers, not the tables' top
    assert "head 0 of layer 0 and neuron 6 of layer 0) are not in the circuit" in circuit
    assert "stable idea of anger" in narrative.persistence_sentence(results.cross_layer("anger").numpy(), "anger")


def test_sentences_use_the_adjective_and_counts_agree() -> None:
    assert [glossary.adjective(emotion) for emotion in EMOTIONS] == ["angry", "sad", "happy", "afraid", "surprised", "disgusted"]
    assert glossary.adjective("calm") == "calm"  # an emotion it does not know is left as it is
    point = {"top_drop": 0.2, "top_ci95": [0.1, 0.3], "random_drop": 0.01, "n_top": 12, "three_times_random": True}
    curves = {
        "reading": {"steered": {"causal": {"head": {"1": {"fear": point}}}}},
        "judged": {"baseline": "steered", "head": {"1": {"fear": point}}},
    }
    sentence = narrative.curves_sentence(curves, "steered", "head", "fear")
    assert "top 1 head of" in sentence and "1 random head from" in sentence and "the top 1 head lowered" in sentence
    assert "1 random head by" in sentence and "heads" not in sentence


def test_circuit_components_lists_heads_then_neurons(results: Results) -> None:
    members = circuit_components(results.circuit("fear"))
    assert [c.token for c in members] == ["L1H1", "L2N1"]
    assert describe(members) == "1 head and 1 neuron in layers 1–2" and describe([]) == "nothing"
    assert describe(members[:1]) == "1 head in layer 1"
    by_layer = frames.selection_by_layer(parse_tokens(["L3H1,L3H2,L3N5,L1N2,L1N3"])[0])
    assert by_layer.to_dict("list") == {"layer": [1, 3], "heads": ["", "1, 2"], "neurons": [2, 1]}


def test_every_chart_builds_and_exports(results: Results) -> None:
    built = [
        charts.cluster_map(frames.map_frame(results, 1, "umap"), frames.map_extent(results, "umap")),
        charts.cosine_heatmap(frames.cosine_frame(results.cosine_matrix(1))),
        charts.separation_chart(frames.separation_frame(results, 1), results.n_layers, "sep"),
        charts.head_heatmap(frames.grid_frame(results.head_scores("anger"), "head"), "heads"),
        charts.neuron_chart(frames.top_per_layer(results.neuron_scores("anger"), 3), "neurons"),
        charts.sublayer_chart(frames.sublayer_frame(results.sublayer_importance("anger")), "parts"),
        charts.cross_layer_heatmap(frames.cross_layer_frame(results.cross_layer("anger")), "cross"),
    ]
    for chart in built:
        assert chart.to_dict()
    assert chart_bytes(lambda: built[1], "svg").startswith(b"<svg")
    assert chart_bytes(lambda: built[1], "png").startswith(b"\x89PNG")
    assert table_bytes(results.top_heads("anger", 2)).decode().startswith("layer,head,score")
    assert file_stem("clusters", "umap", "layer 3", "") == "clusters_umap_layer-3"


def test_the_words_on_tables_and_charts_match(results: Results) -> None:
    assert list(frames.separation_table(results).columns) == ["layer", "cluster separation", "classifier accuracy"]
    assert set(frames.separation_frame(results, 1)["measure"]) == {"cluster separation", "classifier accuracy"}
    assert list(frames.cosine_frame(results.cosine_matrix(1)).columns) == ["emotion", "other", "similarity"]
    heatmap = str(charts.cosine_heatmap(frames.cosine_frame(results.cosine_matrix(1))).to_dict())
    assert "cosine" not in heatmap and "'title': 'similarity'" in heatmap
    heads = charts.head_heatmap(frames.grid_frame(results.head_scores("anger"), "head"), "heads").to_dict()["encoding"]
    assert heads["tooltip"][-1]["title"] == heads["color"]["legend"]["title"] == "importance"  # tooltip and legend: one word
    neurons = charts.neuron_chart(frames.top_per_layer(results.neuron_scores("anger"), 3), "neurons").to_dict()["encoding"]
    assert neurons["tooltip"][-1]["title"] == neurons["y"]["title"] == "contribution"
    assert glossary.MLP and glossary.UMAP_PCA and glossary.CIRCUIT


def test_cross_layer_labels_name_both_parts_and_half_page_titles_wrap() -> None:
    order = frames.position_labels(30)
    ticks = charts.position_ticks(order)
    assert 6 <= len(ticks) <= charts.MAX_POSITION_LABELS and ticks[:3] == ["Attn 0", "MLP 2", "Attn 5"]
    assert charts.position_ticks(frames.position_labels(2)) == ["Attn 0", "MLP 0", "Attn 1", "MLP 1"]
    title = charts.neuron_chart(pd.DataFrame(columns=["layer", "neuron", "score", "rank"]), "The 10 strongest neurons of each layer")
    assert title.to_dict()["title"] == ["The 10 strongest neurons", "of each layer"]


@pytest.mark.parametrize(
    ("source", "folder"),
    [
        ("/tmp/nope", True),
        ("./my-model", True),
        ("~/models/x", True),
        ("..", True),
        ("a/b/c", True),
        ("models\\llama", True),
        ("C:\\models\\llama", True),
        ("Qwen/Qwen2.5-0.5B-Instruct", False),
        ("gpt2", False),
        ("my-org/my.model_v2", False),
    ],
)
def test_paths_are_told_from_hub_ids(source: str, folder: bool) -> None:
    assert builder.looks_like_folder(source) is folder


def test_a_missing_folder_is_named_as_one(tmp_path: Path) -> None:
    missing = builder.folder_problem(str(tmp_path / "nope"))
    assert missing and "does not exist on this computer" in missing and "Hub" not in missing
    assert "looked for" in builder.folder_problem("./surely-not-here")
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in builder.folder_problem(str(tmp_path / "file"))
    assert builder.folder_problem(str(tmp_path)) is None and builder.folder_problem("Qwen/Qwen2.5-0.5B-Instruct") is None


def test_a_highlight_covers_each_paragraph_of_the_rest_and_never_touches_a_word() -> None:
    """The page showed '…big[ day …]' raw: a highlight spanning a blank line, or glued to a word or a colon, is not read."""
    assert highlighted("It was a big", " day.\n\nI'm *sad*") == (
        "It was a big :orange-background[day.]\n\n:orange-background[I'm \\*sad\\*]"
    )
    assert highlighted("edits:", "\n\nI moved") == "edits:\n\n:orange-background[I moved]"
    assert highlighted("I", "'m fine") == "I\u200b:orange-background['m fine]"
    assert highlighted("", "All new ") == ":orange-background[All new] "


def test_a_head_grid_click_toggles_once_even_when_the_browser_sends_it_again() -> None:
    def page() -> None:
        import streamlit as st

        from ui import knockout_parts
        from ui.state import SELECTION

        def click(key: str, layer: int, head: int) -> None:
            st.session_state[key] = {"selection": {"cell": [{"layer": layer, "head": head}]}}
            knockout_parts.grid_clicked(key)

        first = knockout_parts.grid_key()
        click(first, 23, 1)
        second = knockout_parts.grid_key()
        click(second, 20, 3)
        click(second, 20, 3)  # the same click again, with a later rerun
        click(first, 23, 1)
        shown = list(st.session_state[SELECTION])
        click(second, 21, 4)  # a new cell on a grid not yet replaced in the browser: a real click
        st.write(f"{first} {second} {shown} {st.session_state[SELECTION]}")

    app = AppTest.from_function(page).run()
    assert not app.exception
    assert app.markdown[0].value == "knockout_grid_0 knockout_grid_1 ['L23H1', 'L20H3'] ['L23H1', 'L20H3', 'L21H4']"


def test_the_live_pages_decode_as_the_evaluation_does() -> None:
    """A steered reply looped on the Steer page ("I don't know what's happening to him" x3) while the evaluation, which
    blocks repeated 3-word phrases, reported the same steering as fluent: the pages now decode the evaluation's way."""

    def page() -> None:
        import streamlit as st

        from ui import live

        settings = live.decoding_controls()
        st.markdown(f"{settings.repetition_penalty} {settings.no_repeat_ngram_size} {settings.do_sample}")

    from emo_core.scoring import SCORING_SETTINGS

    app = AppTest.from_function(page).run()
    assert not app.exception
    assert app.markdown[0].value == f"{SCORING_SETTINGS.repetition_penalty} {SCORING_SETTINGS.no_repeat_ngram_size} False"
    assert SCORING_SETTINGS.no_repeat_ngram_size > 0
