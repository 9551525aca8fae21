"""Rates and bootstrap confidence intervals shared by both studies."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] | None = None,
    n: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (default: the mean) over the rows of ``values``.

    NaN rows are dropped first (items a metric is undefined on). Returns (nan, nan) when nothing is left.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[~np.isnan(values)]
    else:
        values = values[~np.isnan(values).any(axis=1)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    if statistic is None:
        stats = values[idx].mean(axis=1)
    else:
        stats = np.array([statistic(values[i]) for i in idx])
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def cluster_bootstrap_ci(values, clusters, n: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` resampling whole ``clusters`` (e.g. the passages the items
    come from) with replacement; the mean of a resample is over all its items."""
    values = np.asarray(values, dtype=float)
    keys = list(dict.fromkeys(clusters))
    if len(values) == 0:
        return (float("nan"), float("nan"))
    index = {k: i for i, k in enumerate(keys)}
    cid = np.array([index[c] for c in clusters])
    sums = np.bincount(cid, weights=values, minlength=len(keys))
    counts = np.bincount(cid, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(keys), size=(n, len(keys)))
    stats = sums[draw].sum(1) / counts[draw].sum(1)
    lo, hi = np.quantile(stats, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)
