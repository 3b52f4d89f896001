"""Percentile-bootstrap confidence intervals of a mean (over seeds, scenes, ...), via scipy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_ci(
    values: Sequence[float] | np.ndarray, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """``(low, high)`` percentile-bootstrap interval of the mean of a non-empty 1-d ``values``
    (:func:`scipy.stats.bootstrap`); a single or constant value gives a zero-width interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"mean_ci expects a non-empty 1-d array of values, got shape {x.shape}")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    from scipy.stats import bootstrap

    res = bootstrap(
        (x,),
        np.mean,
        n_resamples=int(resamples),
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
