"""95% percentile-bootstrap intervals of a mean and of a difference of means, for the knockout measurements.

``scipy.stats.bootstrap`` resamples; these wrappers fix the method (percentile), the level (95%) and the seed. A sample of
one value is that value in every resample (scipy needs two observations, so it is given twice).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import bootstrap

LEVEL = 0.95


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


def _mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis)


def _sample(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        raise ValueError("A bootstrap interval needs at least one value.")
    return np.repeat(data, 2) if len(data) == 1 else data


def bootstrap_interval(values: Sequence[float], n: int, seed: int) -> list[float]:
    """The 95% interval of the mean of ``values`` from ``n`` bootstrap resamples drawn with ``seed``."""
    found = bootstrap(
        (_sample(values),), _mean, n_resamples=n, confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(seed)
    )
    return [float(found.confidence_interval.low), float(found.confidence_interval.high)]


def difference_interval(top: Sequence[float], control: Sequence[float], n: int, seed: int, paired: bool = False) -> list[float]:
    """The 95% interval of ``mean(top) - mean(control)``; ``paired`` resamples both with the same indices (one pair per prompt)."""
    a, b = _sample(top), _sample(control)
    found = bootstrap(
        (a, b), _mean_difference, n_resamples=n, confidence_level=LEVEL, method="percentile", paired=paired, rng=np.random.default_rng(seed)
    )
    return [float(found.confidence_interval.low), float(found.confidence_interval.high)]
