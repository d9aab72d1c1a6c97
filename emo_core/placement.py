"""Placing new runs on a saved 2-D map (the maps come from ``projection.py``; placing needs only numpy, so the app can do it cheaply)."""

from __future__ import annotations

import numpy as np


def place_on_map(new: np.ndarray, coordinates: np.ndarray, positions: np.ndarray, k: int = 10) -> np.ndarray:
    """Positions for new points on a saved map: the distance-weighted mean position of their ``k`` nearest mapped points.

    A UMAP cannot be re-applied without its fitted model, so a new state goes where the prompts most like it are
    (in the same emotion coordinates the map was drawn from); on PCA maps this is close to the exact projection.

    Args:
        new: ``[m, E]`` emotion coordinates of the new states.
        coordinates: ``[n, E]`` emotion coordinates of the mapped points.
        positions: ``[n, 2]`` their positions on the map.

    Returns:
        ``[m, 2]``.
    """
    distances = np.linalg.norm(new[:, None, :] - coordinates[None, :, :], axis=-1)  # [m, n]
    nearest = np.argsort(distances, axis=1)[:, :k]
    weights = 1.0 / (np.take_along_axis(distances, nearest, axis=1) + 1e-6)
    weights /= weights.sum(axis=1, keepdims=True)
    return (positions[nearest] * weights[..., None]).sum(axis=1)
