"""The part page's numbers and pieces on a synthetic cache: a part's ranks are its places in the rankings the Circuit page
shows, the page opens on the strongest part of the prepared knockout, and the word-by-word text is escaped."""

from __future__ import annotations

import numpy as np
import pytest

from emo_core.causal import part_profile
from emo_core.results import Results
from tests.synthetic_cache import synthetic_results
from ui.part_view import default_part, layer_runs, tinted


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return synthetic_results(tmp_path_factory.mktemp("results"))


@pytest.mark.parametrize("kind", ["head", "neuron"])
def test_a_parts_ranks_are_its_places_in_both_rankings_for_every_emotion(results: Results, kind: str) -> None:
    own = results.causal_effects("steered", kind, "mean")
    harm, base = results.causal_harm(kind, "mean")
    paper = results.tensor(f"{kind}_scores")
    width = own.shape[-1]
    for layer in range(own.shape[1]):
        for index in range(width):
            profile = part_profile(own, harm, base, paper, results.emotions, kind, layer, index).set_index("emotion")
            for e, emotion in enumerate(results.emotions):
                table = results.causal_ranking(emotion, kind)  # the Circuit page's table, in its order
                where = table.index[(table["layer"] == layer) & (table[kind] == index)][0]
                expected = where + 1 if table.loc[where, "eligible"] else 0
                assert profile.loc[emotion, "rank"] == expected
                assert profile.loc[emotion, "own"] == pytest.approx(float(own[e, layer, index]))
                top = results.top_heads(emotion) if kind == "head" else results.top_neurons(emotion)  # the paper's table
                place = top.index[(top["layer"] == layer) & (top[kind] == index)][0]
                assert profile.loc[emotion, "paper_rank"] == place + 1


def test_the_page_opens_on_the_strongest_part_of_the_prepared_knockout(results: Results) -> None:
    for emotion in results.emotions:
        parts = results.prepared(emotion).parts
        chosen = default_part(results, emotion)
        e = results.emotion_index(emotion)
        score = {kind: results.causal_scores("steered", kind, "mean")[e] for kind in ("head", "neuron")}
        assert chosen in parts
        assert all(score[chosen.kind][chosen.layer, chosen.index] >= score[p.kind][p.layer, p.index] for p in parts)


def test_tinted_text_is_escaped_and_marks_the_reply_and_the_word() -> None:
    html = tinted(["<b>", " hi\n", " there"], np.array([1.0, -0.5, 0.0]), marked=2, reply_at=1)
    assert "<b>" not in html.replace("<b>Reply:</b>", "") and "&lt;b&gt;" in html
    assert html.index("Reply:") < html.index(" hi") and html.count("outline") == 1 and "<br>" in html
    assert "rgba(230,159,0,1.00)" in html and "rgba(0,114,178,0.50)" in html  # orange full, blue half


def test_layer_runs_name_the_layers_shown() -> None:
    assert layer_runs([9, 0, 1, 10, 11, 29]) == "0–1, 9–11, 29" and layer_runs([]) == "" and layer_runs([4]) == "4"
