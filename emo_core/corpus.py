"""A judge's training corpus read by the model: the sentences each neuron responds to most, and where each layer reads emotion.

The corpus is the second judge's, ``datasets/judge2_train.jsonl``: sentences labelled with one of the six emotions or
neutral (130 of each), written apart from the first judge's sentences that the expression vectors come from, so the
layer reading is calibrated, and its AUC measured, on sentences the directions never saw. The model reads each sentence
as its own reply to one fixed question (``CORPUS_USER``), and only the sentence's own tokens are read. One pass gives,
per sentence:

* every neuron's largest activation over the sentence's tokens (``mlp_post``, the down projection's input), from which
  each neuron's top sentences per emotion follow: what it responds to, in words a reader can check;
* every layer's uncalibrated emotion contrast (``reading.layer_contrasts`` along the expression vectors), averaged over
  the sentence's tokens, from which the layer-by-layer reading (``reading.LayerReading``) is calibrated: 0 is the mean
  over neutral sentences, 1 the mean over the emotion's own sentences, and an AUC says where that reading means something.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from emo_core.expression import QUESTION, reply_batches
from emo_core.judge import NGRAM_TRAIN_PATH, read_labelled
from emo_core.models import ModelBundle
from emo_core.progress import Progress
from emo_core.reading import LayerReading, layer_contrasts, unit_directions
from emo_core.scenarios import EMOTIONS

CORPUS_PATH = NGRAM_TRAIN_PATH
CORPUS_USER = QUESTION  # the expression vectors' question, so the sentences are read as those vectors' replies were
NEUTRAL = "neutral"
TOP_K = 3  # top sentences kept per neuron and emotion
CORPUS_BATCH = 16


def load_corpus(per_label: int | None = None) -> tuple[list[str], list[str]]:
    """The corpus's texts and labels in file order; with ``per_label``, only the first that many sentences of each label."""
    texts, labels = read_labelled(CORPUS_PATH)
    if per_label is None:
        return texts, labels
    seen: dict[str, int] = {}
    kept = []
    for text, label in zip(texts, labels, strict=True):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= per_label:
            kept.append((text, label))
    return [text for text, _ in kept], [label for _, label in kept]


def read_corpus(
    bundle: ModelBundle, texts: Sequence[str], units: torch.Tensor, batch_size: int = CORPUS_BATCH, progress: Progress | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read each sentence as the model's reply to ``CORPUS_USER``, over the sentence's own tokens only.

    Args:
        units: ``[E, L, d_model]`` unit expression vectors at every layer.

    Returns:
        ``max_acts`` ``[N, L, d_mlp]``, every neuron's largest activation over the sentence's tokens (in the model's
        dtype, at least float32), and ``contrasts`` ``[N, L, E]``, every layer's uncalibrated emotion contrast averaged
        over them (the contrast is linear in the state, so it is the contrast of the mean state).
    """
    layers = range(bundle.shape.n_layers)
    maxima, contrasts = [], []
    bar = tqdm(total=len(texts), desc="corpus", unit="sentence", disable=progress is not None)
    for captured, mask in reply_batches(bundle, texts, ("mlp_post", "resid_post"), batch_size, question=CORPUS_USER):
        real = mask.bool()[..., None]  # [rows, pos, 1]; masked by selection, so whatever a padded position holds is never read
        maxima.append(torch.stack([captured[("mlp_post", layer)].where(real, -torch.inf).amax(dim=1) for layer in layers], dim=1))
        count = mask.sum(dim=1)[:, None]
        means = torch.stack([captured[("resid_post", layer)].where(real, 0.0).sum(dim=1) / count for layer in layers], dim=1)
        contrasts.append(layer_contrasts(means, units))
        bar.update(len(mask))
        if progress is not None:
            progress(sum(len(m) for m in maxima), len(texts))
    bar.close()
    return torch.cat(maxima), torch.cat(contrasts)


def _emotion_rows(labels: Sequence[str], emotion: str, k: int) -> torch.Tensor:
    rows = torch.tensor([i for i, label in enumerate(labels) if label == emotion], dtype=torch.long)
    if len(rows) < k:
        raise ValueError(f"The corpus has {len(rows)} sentences of {emotion}; the top {k} need at least {k}.")
    return rows


def neuron_top_sentences(max_acts: torch.Tensor, labels: Sequence[str], k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Per emotion, the ``k`` sentences of that emotion on which each neuron's largest activation is highest.

    Args:
        max_acts: ``[N, L, d_mlp]`` from ``read_corpus``.
        labels: the ``N`` sentences' labels.

    Returns:
        ``values`` and corpus ``indices`` (long), each ``[E, L, d_mlp, k]``, best first; of equal values the sentence
        that comes first in the corpus ranks first.
    """
    values, indices = [], []
    for emotion in EMOTIONS:
        rows = _emotion_rows(labels, emotion, k)
        ordered, order = max_acts[rows].sort(dim=0, descending=True, stable=True)  # stable: ties keep corpus order
        values.append(ordered[:k].permute(1, 2, 0))
        indices.append(rows[order[:k]].permute(1, 2, 0))
    return torch.stack(values), torch.stack(indices)


def layer_reading(units: torch.Tensor, contrasts: torch.Tensor, labels: Sequence[str]) -> LayerReading:
    """The layer-by-layer reading calibrated on the corpus: per layer and emotion, 0 is the mean contrast over the neutral
    sentences, 1 the mean of the emotion's own contrast over its sentences, and ``auc`` how well that own contrast tells
    the emotion's sentences from all the others (neutral and the other emotions)."""
    label_array = list(labels)
    neutral = torch.tensor([label == NEUTRAL for label in label_array])
    if not neutral.any():
        raise ValueError("The corpus has no neutral sentences to calibrate the layer reading's zero.")
    zero = contrasts[neutral].mean(dim=0)  # [L, E]
    own, auc = [], []
    for e, emotion in enumerate(EMOTIONS):
        mine = torch.tensor([label == emotion for label in label_array])
        if not mine.any():
            raise ValueError(f"The corpus has no sentences of {emotion} to calibrate the layer reading.")
        own.append(contrasts[mine, :, e].mean(dim=0))
        scores = contrasts[:, :, e].double().numpy()
        auc.append(torch.tensor([roc_auc_score(mine.numpy(), scores[:, layer]) for layer in range(contrasts.shape[1])]))
    return LayerReading(units.float(), zero.float(), torch.stack(own, dim=1).float(), torch.stack(auc, dim=1).float())


def corpus_tensors(
    bundle: ModelBundle,
    expression_resid_post: torch.Tensor,
    *,
    per_label: int | None = None,
    batch_size: int = CORPUS_BATCH,
    k: int = TOP_K,
    progress: Progress | None = None,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """What a cache stores of the corpus for ``bundle``: every neuron's top sentences per emotion (``corpus.top_index``,
    ``corpus.top_value``, ``[E, L, d_mlp, k]``; indices as float32, exact below 2**24), the layer reading's calibration
    (``LayerReading.to_tensors``), and the ``corpus`` table (``text``, ``label``) the indices point into.

    ``expression_resid_post`` is the cache's ``[E, L, d_model]`` expression vectors; ``per_label`` limits the corpus to
    the first sentences of each label. Runs on a freshly built cache's model or on an existing cache's.
    """
    texts, labels = load_corpus(per_label)
    units = unit_directions(expression_resid_post, tuple(range(expression_resid_post.shape[1])))
    max_acts, contrasts = read_corpus(bundle, texts, units, batch_size, progress)
    values, indices = neuron_top_sentences(max_acts, labels, k)
    tensors = {"corpus.top_index": indices.float(), "corpus.top_value": values.float()}
    tensors.update(layer_reading(units, contrasts, labels).to_tensors())
    return tensors, pd.DataFrame({"text": texts, "label": labels})
