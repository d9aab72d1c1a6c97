"""The corpus readings: the batched pass over the judge's sentences equals a plain pass per sentence, each neuron's top
sentences are that emotion's best, and the layer reading reads 0 on neutral sentences and 1 on each emotion's own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import emo_core as ec
from emo_core.corpus import CORPUS_USER, corpus_tensors, layer_reading, load_corpus, neuron_top_sentences, read_corpus
from emo_core.interventions import untuple
from emo_core.reading import LayerReading, layer_contrasts
from emo_core.results import CORPUS_TENSORS, Results, load_results
from emo_core.scenarios import EMOTIONS
from emo_core.store import CacheError
from tests.conftest import exact, tiny_model
from tests.synthetic_cache import CORPUS_PER_LABEL, CORPUS_TOP, SHAPE, write_synthetic_cache

SENTENCES = [
    ("How dare they cancel my booking without a word!", "anger"),
    ("I am furious that nobody listened.", "anger"),
    ("My old dog passed away this morning and the house feels empty.", "sadness"),
    ("I miss how things were.", "sadness"),
    ("We won the raffle, I can't stop smiling!", "happiness"),
    ("What a lovely, sunny afternoon with friends.", "happiness"),
    ("Something is scratching at the window and I am shaking.", "fear"),
    ("What if the brakes fail on the hill?", "fear"),
    ("Wait, the parcel arrived a whole week early?", "surprise"),
    ("No way, you built that yourself?!", "surprise"),
    ("The fridge smelled of rotten fish and mould.", "disgust"),
    ("He chewed with his mouth open and licked the knife. Gross.", "disgust"),
    ("The meeting moved to room four.", "neutral"),
    ("Bread is on the second shelf.", "neutral"),
]
TEXTS = [text for text, _ in SENTENCES]
LABELS = [label for _, label in SENTENCES]


def _unit_vectors(bundle: ec.ModelBundle, seed: int = 0) -> torch.Tensor:
    vectors = torch.randn(len(EMOTIONS), bundle.shape.n_layers, bundle.shape.d_model, generator=torch.Generator().manual_seed(seed))
    return vectors / vectors.norm(dim=-1, keepdim=True)


def _one_by_one(bundle: ec.ModelBundle, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: each sentence alone through an ordinary forward pass, read by plain hooks on the down projection's
    input and on each layer's output, over the positions past the prompt: ``max`` ``[N, L, d_mlp]``, ``mean`` ``[N, L, d]``."""
    adapter, layers = bundle.adapter, range(bundle.shape.n_layers)
    prompt = ec.chat_prompt(bundle, CORPUS_USER)
    n = len(bundle.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    seen: dict[tuple[str, int], torch.Tensor] = {}

    def keep(key: tuple[str, int], tensor: torch.Tensor) -> None:
        seen[key] = tensor

    handles = []
    for layer in layers:
        handles.append(adapter.mlp_out(layer).register_forward_pre_hook(lambda m, args, layer=layer: keep(("mlp", layer), args[0])))
        handles.append(adapter.layer(layer).register_forward_hook(lambda m, a, out, layer=layer: keep(("post", layer), untuple(out))))
    maxima, means = [], []
    try:
        for text in texts:
            batch = ec.generation.encode(bundle, [prompt + text])
            assert batch["input_ids"].shape[1] > n
            with torch.inference_mode():
                bundle.model(**batch)
            maxima.append(torch.stack([seen[("mlp", layer)][0, n:].amax(dim=0) for layer in layers]))
            means.append(torch.stack([seen[("post", layer)][0, n:].mean(dim=0) for layer in layers]))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(maxima), torch.stack(means)


def test_the_batched_corpus_pass_equals_one_plain_pass_per_sentence(tiny: ec.ModelBundle) -> None:
    units = _unit_vectors(tiny)
    max_acts, contrasts = read_corpus(tiny, TEXTS, units, batch_size=5)  # batches of uneven lengths, the last one short
    want_max, want_mean = _one_by_one(tiny, TEXTS)
    assert max_acts.shape == (len(TEXTS), tiny.shape.n_layers, tiny.shape.d_mlp)
    torch.testing.assert_close(max_acts, want_max.to(max_acts.dtype), atol=exact(tiny), rtol=0)
    torch.testing.assert_close(contrasts, layer_contrasts(want_mean, units), atol=1e-5, rtol=1e-5)  # contrasts in float32
    values, indices = neuron_top_sentences(max_acts, LABELS, k=2)
    want_values, want_indices = neuron_top_sentences(want_max, LABELS, k=2)
    assert torch.equal(indices, want_indices)
    torch.testing.assert_close(values, want_values.to(values.dtype), atol=exact(tiny), rtol=0)


@pytest.fixture(scope="module")
def tiny_llama(embedded: ec.ModelBundle) -> ec.ModelBundle:
    return ec.bundle_from(tiny_model("llama"), embedded.tokenizer, name="tiny-llama")


def test_corpus_tensors_hold_every_neurons_top_sentences_and_the_layer_calibration(tiny_llama: ec.ModelBundle) -> None:
    tiny = tiny_llama
    vectors = _unit_vectors(tiny) * 3.0
    tensors, table = corpus_tensors(tiny, vectors, per_label=3, batch_size=8, k=2)
    texts, labels = load_corpus(per_label=3)
    assert list(table["text"]) == texts and list(table["label"]) == labels and len(texts) == 3 * (len(EMOTIONS) + 1)
    shape = (len(EMOTIONS), tiny.shape.n_layers, tiny.shape.d_mlp, 2)
    assert tensors["corpus.top_index"].shape == tensors["corpus.top_value"].shape == shape
    assert all(t.dtype == torch.float32 for t in tensors.values())
    for e, emotion in enumerate(EMOTIONS):
        assert set(table["label"].iloc[tensors["corpus.top_index"][e].long().flatten().numpy()]) == {emotion}
    reading = LayerReading.from_tensors({**tensors, "expression.resid_post": vectors})
    assert reading.zero.shape == reading.one.shape == reading.auc.shape == (tiny.shape.n_layers, len(EMOTIONS))
    assert ((reading.auc >= 0) & (reading.auc <= 1)).all()


def test_top_sentences_are_only_the_emotions_own_best_first_ties_in_corpus_order() -> None:
    labels = ["anger", "neutral", "anger", "sadness", "anger", *EMOTIONS[1:], *EMOTIONS[1:]]
    acts = torch.zeros(len(labels), 1, 2)
    acts[:, 0, 0] = torch.arange(len(labels), dtype=torch.float32)  # neuron 0: later sentences fire more
    acts[1, 0, 0] = 100.0  # the neutral sentence fires most of all, and is never anyone's top
    acts[[0, 2, 4], 0, 1] = torch.tensor([5.0, 7.0, 5.0])  # neuron 1: a tie below the best
    values, indices = neuron_top_sentences(acts, labels, k=2)
    anger = EMOTIONS.index("anger")
    assert indices[anger, 0, 0].tolist() == [4, 2] and values[anger, 0, 0].tolist() == [4.0, 2.0]
    assert indices[anger, 0, 1].tolist() == [2, 0] and values[anger, 0, 1].tolist() == [7.0, 5.0]
    for e, emotion in enumerate(EMOTIONS):
        assert all(labels[i] == emotion for i in indices[e].flatten().tolist())
    with pytest.raises(ValueError, match="3 sentences of anger; the top 4 need at least 4"):
        neuron_top_sentences(acts, labels, k=4)


@pytest.fixture
def calibrated() -> tuple[LayerReading, torch.Tensor, list[str], torch.Tensor]:
    """A layer reading calibrated on random states of a made-up corpus whose emotional sentences lean along their emotion."""
    gen = torch.Generator().manual_seed(3)
    n_layers, d = 4, 16
    vectors = torch.randn(len(EMOTIONS), n_layers, d, generator=gen)
    units = vectors / vectors.norm(dim=-1, keepdim=True)
    labels = [label for label in (*EMOTIONS, "neutral") for _ in range(5)]
    states = torch.randn(len(labels), n_layers, d, generator=gen)
    for i, label in enumerate(labels):
        if label != "neutral":
            states[i] += 3.0 * units[EMOTIONS.index(label)]
    return layer_reading(units, layer_contrasts(states, units), labels), states, labels, vectors


def test_the_layer_reading_is_0_on_neutral_sentences_and_1_on_each_emotions_own(calibrated: tuple) -> None:
    reading, states, labels, _ = calibrated
    rows = np.array(labels)
    levels = reading(states)  # [N, L, E]
    assert levels.shape == (len(labels), 4, len(EMOTIONS))
    torch.testing.assert_close(levels[rows == "neutral"].mean(dim=0), torch.zeros(4, len(EMOTIONS)), atol=1e-5, rtol=0)
    for e, emotion in enumerate(EMOTIONS):
        torch.testing.assert_close(levels[rows == emotion][:, :, e].mean(dim=0), torch.ones(4), atol=1e-5, rtol=0)
    assert (reading.auc > 0.9).all()  # every sentence leans along its emotion at every layer


def test_the_layer_reading_round_trips_through_the_cache_tensors(calibrated: tuple) -> None:
    reading, states, _, vectors = calibrated
    tensors = reading.to_tensors()
    assert tensors["layer_reading.calibration"].shape == (2, 4, len(EMOTIONS)) and tensors["layer_reading.auc"].shape == (4, len(EMOTIONS))
    again = LayerReading.from_tensors({**tensors, "expression.resid_post": vectors})
    torch.testing.assert_close(again(states), reading(states))
    torch.testing.assert_close(again.auc, reading.auc)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Results:
    root = tmp_path_factory.mktemp("caches")
    write_synthetic_cache(root, "synthetic/model")
    return load_results("synthetic/model", root)


def test_results_name_each_emotions_top_sentences_of_a_neuron(synthetic: Results) -> None:
    table = synthetic.neuron_top_sentences(2, 5)
    assert list(table.columns) == ["emotion", "rank", "text", "activation"]
    assert len(table) == len(EMOTIONS) * CORPUS_TOP
    corpus = synthetic.table("corpus").set_index("text")["label"]
    for emotion, rows in table.groupby("emotion", sort=False):
        assert rows["rank"].tolist() == list(range(1, CORPUS_TOP + 1))
        assert (corpus[rows["text"]] == emotion).all()
        assert rows["activation"].is_monotonic_decreasing
    assert len(synthetic.table("corpus")) == CORPUS_PER_LABEL * (len(EMOTIONS) + 1)
    for layer, index in ((SHAPE["n_layers"], 0), (-1, 0), (0, SHAPE["d_mlp"]), (0, -1)):
        with pytest.raises(ValueError, match="out of range"):
            synthetic.neuron_top_sentences(layer, index)


def test_results_give_the_layer_reading(synthetic: Results) -> None:
    reading = synthetic.layer_reading()
    assert reading.units.shape == (len(EMOTIONS), SHAPE["n_layers"], SHAPE["d_model"])
    assert reading(torch.zeros(2, SHAPE["n_layers"], SHAPE["d_model"])).shape == (2, SHAPE["n_layers"], len(EMOTIONS))


def test_a_cache_that_predates_the_corpus_readings_names_the_rebuild(synthetic: Results, tmp_path: Path) -> None:
    arrays = {name: array for name, array in synthetic.cache.arrays.items() if name not in CORPUS_TENSORS}
    tables = {name: table for name, table in synthetic.cache.tables.items() if name != "corpus"}
    older = Results(synthetic.folder, replace(synthetic.cache, arrays=arrays, tables=tables))
    for read in (older.layer_reading, lambda: older.neuron_top_sentences(0, 0)):
        with pytest.raises(CacheError, match="has no corpus readings .*predates them.*python -m emo_core build"):
            read()
