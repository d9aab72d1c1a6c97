"""2-D maps of hidden states per layer (PCA and UMAP), aligned from layer to layer.

The maps are drawn from each state's *emotion coordinates*: how far it points along each of the six
emotion directions of its layer. The raw state is dominated by what the scenario is about (a UMAP of
it groups the 18 prompts of each scenario into islands, whatever emotion they ask for); seen
through the emotion directions, the prompts are mixed in early layers and gather by emotion from the
middle layers on, which is the paper's finding made visible.

Each layer's map is rotated onto the previous one (orthogonal Procrustes), and each UMAP fit starts
from the previous layer's map, so a point moves only as much as its hidden state does and clusters
visibly form as depth grows instead of jumping around between layers.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import orthogonal_procrustes
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from emo_core.progress import Progress


def _standardise(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    return centred / (np.sqrt((centred**2).sum(axis=1).mean()) + 1e-12)


def align_to(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``points`` centred, scaled to unit rms radius, and rotated or reflected to best match ``reference``."""
    points = _standardise(points)
    rotation, _ = orthogonal_procrustes(points, _standardise(reference))
    return points @ rotation


def emotion_coordinates(acts: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Per layer, each state's projection on the layer's emotion directions, after removing the mean state.

    Args:
        acts: ``[n_points, n_layers, width]`` hidden states.
        directions: ``[n_emotions, n_layers, width]`` unit emotion directions.

    Returns:
        ``[n_points, n_layers, n_emotions]``.
    """
    centred = acts - acts.mean(axis=0, keepdims=True)
    return np.einsum("nlw,elw->nle", centred, directions).astype(np.float32)


def pca_maps(acts: np.ndarray) -> np.ndarray:
    """Per layer, the first two principal components of ``[n_points, n_layers, width]``: ``[n_layers, n_points, 2]``."""
    maps = []
    for layer in range(acts.shape[1]):
        points = PCA(n_components=2, random_state=0).fit_transform(acts[:, layer])
        maps.append(align_to(points, maps[-1]) if maps else _standardise(points))
    return np.stack(maps).astype(np.float32)


def umap_maps(acts: np.ndarray, seed: int = 0, n_epochs: int = 200, progress: Progress | None = None) -> np.ndarray:
    """Per layer, a UMAP of ``[n_points, n_layers, width]`` started from the previous layer's map.

    Distances are precomputed: for < 4096 points UMAP's ``metric="euclidean"`` fills the all-pairs matrix
    through sklearn, one Python call of umap's numba ``euclidean`` per pair (90% of the stage's time);
    ``pairwise_special_metric`` runs that same function in one compiled loop, so the maps are bit-identical
    (sklearn's or scipy's euclidean distances differ in the last bits, and that moves the maps).
    """
    import umap  # numba compiles on first import; keep it out of the app's start-up path
    from umap.distances import pairwise_special_metric

    n_layers = acts.shape[1]
    maps: list[np.ndarray] = []
    bar = tqdm(total=n_layers, desc="umap", unit="layer", disable=progress is not None)
    for layer in range(n_layers):
        init = maps[-1] * 5.0 if maps else "spectral"
        reducer = umap.UMAP(
            n_components=2, metric="precomputed", n_neighbors=15, min_dist=0.3, n_epochs=n_epochs, init=init, random_state=seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points = reducer.fit_transform(pairwise_special_metric(acts[:, layer], metric="euclidean"))
        maps.append(align_to(points, maps[-1]) if maps else _standardise(points))
        bar.update(1)
        if progress is not None:
            progress(layer + 1, n_layers)
    bar.close()
    return np.stack(maps).astype(np.float32)
