"""Rates and bootstrap confidence intervals shared by both studies: the item bootstrap (:func:`bootstrap_ci`) and
the cluster bootstrap over passages (:func:`cluster_weights`, :func:`cluster_bootstrap`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


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
    return percentile_ci(stats, ci)


def mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def percentile_ci(stats: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """The central ``ci`` percentile interval of bootstrap replicates ``stats`` (NaN replicates left out; (nan, nan)
    when none is left)."""
    stats = np.asarray(stats, dtype=float)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def straddling_clusters(clusters, strata) -> list:
    """The clusters whose items lie in more than one stratum (none: the clusters nest in the strata, as a
    stratified :func:`cluster_weights` needs)."""
    spans = pd.DataFrame({"c": np.asarray(clusters, dtype=object),
                          "s": np.asarray(strata, dtype=object)}).groupby("c")["s"].nunique()
    return list(spans[spans > 1].index)


def cluster_weights(clusters, n: int = 2000, seed: int = 0, strata=None) -> np.ndarray:
    """Item weights of ``n`` cluster-bootstrap replicates, shape (n, number of items).

    In each replicate the clusters (e.g. passages: ``clusters[i]`` names item i's cluster) are drawn with
    replacement, as many as there are; an item's weight is how often its cluster was drawn, so a statistic of the
    pooled items is the same statistic with these weights. With ``strata`` (e.g. the fruit flag), the clusters of
    each stratum are drawn separately, as many as that stratum has, so every replicate keeps the design's number of
    clusters per stratum; a cluster must then lie in one stratum. With one item per cluster and no strata the
    replicates are those of the item bootstrap (:func:`bootstrap_ci` draws the same indices from the same seed).
    """
    clusters = pd.Series(np.asarray(clusters, dtype=object))
    strata_codes = (np.zeros(len(clusters), dtype=int) if strata is None
                    else pd.factorize(pd.Series(np.asarray(strata, dtype=object)))[0])
    if strata is not None:
        split = straddling_clusters(clusters, strata_codes)
        if split:
            raise ValueError(f"cluster_weights: cluster(s) {split[:3]} lie in more than one stratum")
    rng = np.random.default_rng(seed)
    weights = np.zeros((n, len(clusters)))
    for s in pd.unique(strata_codes):
        items = np.flatnonzero(strata_codes == s)
        codes, uniques = pd.factorize(clusters.iloc[items])
        k = len(uniques)
        draws = rng.integers(0, k, size=(n, k))
        counts = np.bincount((draws + k * np.arange(n)[:, None]).ravel(), minlength=n * k).reshape(n, k)
        weights[:, items] = counts[:, codes]
    return weights


def weighted_rate(x, mask=None) -> Callable[[np.ndarray], np.ndarray]:
    """The weighted mean of ``x`` over the items where ``mask`` holds and ``x`` is not NaN, as a function of an
    (r, items) weight array (one value per row; NaN where a row gives those items no weight)."""
    x = np.asarray(x, dtype=float)
    keep = ~np.isnan(x) if mask is None else (np.asarray(mask, dtype=bool) & ~np.isnan(x))
    xs = x[keep]

    def stat(w: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(w)[:, keep]
        den = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (w @ xs) / np.where(den > 0, den, 1), np.nan)

    return stat


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    clusters,
    strata=None,
    n: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(estimate, lo, hi): ``statistic`` (item weights (r, items) -> r values, e.g. :func:`weighted_rate`) at unit
    weights, and its percentile interval over the replicates of :func:`cluster_weights`. Pass ``weights`` to share
    one set of replicates between several statistics of the same items (then ``clusters``/``strata``/``n``/``seed``
    are not used)."""
    if weights is None:
        weights = cluster_weights(clusters, n, seed, strata)
    estimate = float(statistic(np.ones((1, weights.shape[1])))[0])
    lo, hi = percentile_ci(statistic(weights), ci)
    return estimate, lo, hi
