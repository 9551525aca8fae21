"""The cluster bootstrap over passages (talltales.stats): a case worked by hand, the item bootstrap as its special
case, and wider intervals when the items of a passage are correlated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talltales.stats import (bootstrap_ci, cluster_bootstrap, cluster_weights, percentile_ci, straddling_clusters,
                             weighted_rate)


def test_two_passages_worked_by_hand():
    """Passage A holds two items of value 1, passage B one item of value 0. A replicate draws two passages with
    replacement: AA (p = 1/4) gives the rate 1, AB or BA (p = 1/2) gives 2/3 (two 1s of three items), BB (p = 1/4)
    gives 0. So the 95 % interval is (0, 1) and the central 40 % interval (quantiles 0.3 and 0.7) is (2/3, 2/3)."""
    x = np.array([1.0, 1.0, 0.0])
    clusters = ["A", "A", "B"]
    w = cluster_weights(clusters, n=40_000, seed=0)
    assert w.shape == (40_000, 3)
    assert (w[:, 0] == w[:, 1]).all()  # the items of a passage are drawn together
    assert set(np.unique(w[:, 0])) == {0, 1, 2} and (w[:, 0] + w[:, 2] == 2).all()
    reps = weighted_rate(x)(w)
    for value, p in ((1.0, 0.25), (2 / 3, 0.5), (0.0, 0.25)):
        assert np.isclose(reps, value).mean() == pytest.approx(p, abs=0.01)
    est, lo, hi = cluster_bootstrap(weighted_rate(x), clusters, n=40_000, ci=0.95, seed=0)
    assert (est, lo, hi) == pytest.approx((2 / 3, 0.0, 1.0))
    assert cluster_bootstrap(weighted_rate(x), clusters, n=40_000, ci=0.4, seed=0) == pytest.approx((2 / 3,) * 3)


def test_strata_are_resampled_separately_worked_by_hand():
    """Fruit passages A: [1], B: [0]; other passage C: [0, 0]. Each replicate draws two fruit passages and one
    other passage, so C always has weight 1 and the fruit-minus-other gap is 1, 1/2 or 0 with p = 1/4, 1/2, 1/4."""
    x = np.array([1.0, 0.0, 0.0, 0.0])
    fruit = np.array([True, True, False, False])
    w = cluster_weights(["A", "B", "C", "C"], n=20_000, seed=1, strata=fruit)
    assert (w[:, 2:] == 1).all() and (w[:, :2].sum(axis=1) == 2).all()
    gap = weighted_rate(x, fruit)(w) - weighted_rate(x, ~fruit)(w)
    for value, p in ((1.0, 0.25), (0.5, 0.5), (0.0, 0.25)):
        assert np.isclose(gap, value).mean() == pytest.approx(p, abs=0.015)
    with pytest.raises(ValueError, match=r"\['B'\] lie in more than one stratum"):
        cluster_weights(["A", "B", "B", "C"], n=10, strata=fruit)
    assert straddling_clusters(["A", "B", "C", "C"], fruit) == []
    assert straddling_clusters(["A", "B", "B", "C"], fruit) == ["B"]


def test_one_item_per_passage_is_the_item_bootstrap():
    x = np.random.default_rng(3).integers(0, 2, 37).astype(float)
    est, lo, hi = cluster_bootstrap(weighted_rate(x), [f"p{i}" for i in range(37)], n=500, seed=4)
    assert est == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(bootstrap_ci(x, n=500, seed=4), abs=1e-12)


def test_correlated_items_in_a_passage_widen_the_interval():
    """40 passages of 5 items: when a passage's items share one value the effective sample is 40, not 200."""
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(40), 5)
    same = np.repeat(rng.permutation([0.0, 1.0] * 20), 5)  # 20 passages all true, 20 all false
    independent = rng.integers(0, 2, 200).astype(float)
    for x, lo_ratio, hi_ratio in ((same, 1.8, 3.0), (independent, 0.75, 1.3)):
        _, lo, hi = cluster_bootstrap(weighted_rate(x), clusters, n=2000, seed=6)
        item_lo, item_hi = bootstrap_ci(x, n=2000, seed=6)
        assert lo_ratio < (hi - lo) / (item_hi - item_lo) < hi_ratio


def test_rates_without_items_are_nan():
    x = np.array([1.0, np.nan, 0.0])
    assert weighted_rate(x)(np.ones((1, 3)))[0] == pytest.approx(0.5)  # NaN items carry no weight
    assert math.isnan(weighted_rate(x, [False, True, False])(np.ones((1, 3)))[0])
    assert all(math.isnan(v) for v in percentile_ci(np.array([np.nan, np.nan])))
    # a subset absent from some replicates: those replicates are left out of the interval
    w = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert weighted_rate(np.array([1.0, 0.0]), [True, False])(w).tolist()[0] == 1.0
    assert math.isnan(weighted_rate(np.array([1.0, 0.0]), [True, False])(w)[1])
