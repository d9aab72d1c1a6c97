"""The model's internal emotion reading: its late hidden state read along each emotion's expression vector.

A plain projection on an emotion's direction is dominated by what every reply shares, so the reading is
a contrast: an emotion's projection minus the mean projection on the other five emotions' vectors,
averaged over a few late layers. It is then calibrated per emotion so that 0 is the plain (unsteered)
model's mean on training prompts and 1 the mean of replies steered toward that emotion, which makes
readings of different emotions and runs comparable. The judge reads the words; this reads the model.

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


def emotion_contrast(states: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Uncalibrated reading: each emotion's projection minus the others' mean, averaged over the layers.

    Args:
        states: ``[..., k, d]`` hidden states at the reading layers.
        units: ``[E, k, d]`` unit direction per emotion and reading layer.

    Returns:
        ``[..., E]``.
    """
    projections = torch.einsum("...kd,ekd->...ke", states.to(units.dtype), units)
    n = units.shape[0]
    others = (projections.sum(dim=-1, keepdim=True) - projections) / (n - 1)
    return (projections - others).mean(dim=-2)


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


def calibration(plain: torch.Tensor, steered: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``zero`` and ``one`` from uncalibrated readings.

    Args:
        plain: ``[n, E]`` readings of plain replies.
        steered: per emotion, ``[n, E]`` readings of replies steered toward it.
    """
    zero = plain.mean(dim=0)
    one = torch.stack([steered[emotion][:, e].mean() for e, emotion in enumerate(EMOTIONS)])
    return zero, one
