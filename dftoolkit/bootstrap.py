"""Percentile bootstrap: resampling counts and the 95 % interval (the shortcut audit's grouped AUC,
the detector metrics' AUC).

A resampling draws ``n`` units with replacement from ``n``; it is represented by how often each
unit was drawn, so a statistic that is a weighted sum over units (or pairs of units) is computed
for every resampling at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PERCENTILES", "percentile_interval", "resample_counts"]

PERCENTILES = (2.5, 97.5)
"""The ends of the 95 % interval of :func:`percentile_interval`."""


def resample_counts(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """``(draws, n)`` float64: how often each of ``n`` units is drawn in each of ``draws``
    resamplings with replacement (a row sums to ``n``); one ``rng.integers(0, n, (draws, n))`` call."""
    picks = rng.integers(0, n, (draws, n)) + n * np.arange(draws)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def percentile_interval(values: np.ndarray) -> tuple[float, float] | None:
    """The central 95 % of the finite ``values`` (:data:`PERCENTILES`); None when none is finite
    (e.g. no resampling held a pair)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = np.percentile(values, PERCENTILES)
    return float(low), float(high)
