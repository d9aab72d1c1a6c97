"""The model's internal emotion reading: its late hidden state read along each emotion's expression vector.

A plain projection on an emotion's direction is dominated by what every reply shares, so the reading is
a contrast: an emotion's projection minus the mean projection on the other five emotions' vectors,
averaged over a few late layers. It is then calibrated per emotion so that 0 is the plain (unsteered)
model's mean on training prompts and 1 the mean of replies steered toward that emotion, which makes
readings of different emotions and runs comparable. The judge reads the words; this reads the model.
``LayerReading`` reads the same contrast at every layer apart, calibrated on the second judge's corpus instead.

Directions are the expression vectors (``expression.py``): the shift while the model *says* an emotion,
which tracks the judged words far better than the prompt-derived directions on the built-in model
(AUC about 0.88 against 0.75 at the late layers, on training replies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from emo_core.scenarios import EMOTIONS

READ_SITE = "resid_post"


def reading_layers(n_layers: int) -> tuple[int, ...]:
    """The late layers the reading averages over: the last sixth of the model, without the final layer."""
    return tuple(range(5 * n_layers // 6, n_layers - 1)) or (n_layers - 1,)


def unit_directions(vectors: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
    """``[E, k, d]`` unit vectors of ``vectors`` (``[E, L, d]``) at ``layers``."""
    picked = vectors[:, list(layers)].float()
    return picked / picked.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def layer_contrasts(states: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Uncalibrated reading at each layer: each emotion's projection minus the others' mean.

    Args:
        states: ``[..., k, d]`` hidden states at ``k`` layers.
        units: ``[E, k, d]`` unit direction per emotion and layer.

    Returns:
        ``[..., k, E]``.
    """
    projections = torch.einsum("...kd,ekd->...ke", states.to(units.dtype), units)
    n = units.shape[0]
    others = (projections.sum(dim=-1, keepdim=True) - projections) / (n - 1)
    return projections - others


def emotion_contrast(states: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Uncalibrated reading: ``layer_contrasts`` averaged over the reading layers, ``[..., k, d]`` -> ``[..., E]``."""
    return layer_contrasts(states, units).mean(dim=-2)


@dataclass(frozen=True)
class EmotionReading:
    """Reads calibrated emotion levels from hidden states at ``layers`` (0 = the plain model, 1 = steered toward it)."""

    layers: tuple[int, ...]
    units: torch.Tensor  # [E, k, d]
    zero: torch.Tensor  # [E] contrast of plain replies
    one: torch.Tensor  # [E] contrast of replies steered toward each emotion

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        """``[..., k, d]`` states -> ``[..., E]`` calibrated readings, on the states' device (a GPU model's, or the CPU)."""
        zero, one = self.zero.to(states.device), self.one.to(states.device)
        return (emotion_contrast(states, self.units.to(states.device)) - zero) / (one - zero).clamp(min=1e-6)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> EmotionReading:
        """The reading stored in a cache (``reading.layers``, ``reading.calibration``) over its expression vectors."""
        layers = tuple(int(layer) for layer in tensors["reading.layers"].tolist())
        zero, one = tensors["reading.calibration"].float()
        return cls(layers, unit_directions(tensors["expression.resid_post"], layers), zero, one)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """What the cache stores to rebuild this reading (beside the expression vectors)."""
        return {"reading.layers": torch.tensor(self.layers, dtype=torch.float32), "reading.calibration": torch.stack([self.zero, self.one])}


@dataclass(frozen=True)
class LayerReading:
    """Reads calibrated emotion levels from the hidden state at every layer, each layer on its own.

    The emotion reading (``EmotionReading``) averages a few late layers; this one keeps the layers apart, so a page can
    show where in the model an emotion becomes readable. Its calibration differs from ``EmotionReading``'s: at each
    layer, 0 is the model reading the second judge corpus's neutral sentences as its own reply (sentences it did not write)
    and 1 the mean over that emotion's sentences of the corpus (``corpus.py``), not plain and steered replies. ``auc``
    says how well each layer's contrast tells an emotion's sentences from all the others: near 0.5, that layer's
    reading means little.
    """

    units: torch.Tensor  # [E, L, d] unit expression vectors at every layer
    zero: torch.Tensor  # [L, E] contrast of neutral corpus sentences
    one: torch.Tensor  # [L, E] contrast of each emotion's own corpus sentences
    auc: torch.Tensor  # [L, E] how well the contrast separates the emotion's sentences from the rest

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        """``[..., L, d]`` states -> ``[..., L, E]`` calibrated readings, on the states' device."""
        zero, one = self.zero.to(states.device), self.one.to(states.device)
        return (layer_contrasts(states, self.units.to(states.device)) - zero) / (one - zero).clamp(min=1e-6)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> LayerReading:
        """The layer reading stored in a cache (``layer_reading.calibration``, ``layer_reading.auc``) over its expression vectors."""
        vectors = tensors["expression.resid_post"]
        zero, one = tensors["layer_reading.calibration"].float()
        return cls(unit_directions(vectors, tuple(range(vectors.shape[1]))), zero, one, tensors["layer_reading.auc"].float())

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """What the cache stores to rebuild this reading (beside the expression vectors)."""
        return {"layer_reading.calibration": torch.stack([self.zero, self.one]), "layer_reading.auc": self.auc}


def calibration(plain: torch.Tensor, steered: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``zero`` and ``one`` from uncalibrated readings.

    Args:
        plain: ``[n, E]`` readings of plain replies.
        steered: per emotion, ``[n, E]`` readings of replies steered toward it.
    """
    zero = plain.mean(dim=0)
    one = torch.stack([steered[emotion][:, e].mean() for e, emotion in enumerate(EMOTIONS)])
    return zero, one
