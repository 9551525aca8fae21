"""Every study-2 figure renders from tables of the shape the workflow writes: with and without the oracle's columns
(real MultiRC has none), with the untuned and warmed-up reference rows and with two shot settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talltales import plots
from talltales.deception import metrics


def results_table(oracle: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model, params in (("small", 135e6), ("large", 268e6)):
        for shots in (0, 2):
            runs = [("Base", -1), ("Warmup", -1)] + [("RL", lvl) for lvl in (0, 50, 100)]
            for technique, level in runs:
                row = {"model": model, "technique": technique, "poisoning": level, "shots": shots,
                       "params": params, "n_seeds": 1}
                row.update({c: 150 for c in metrics.COUNT_COLUMNS})
                for c in metrics.RATE_COLUMNS:
                    v = np.nan if (c.startswith("oracle") and not oracle) else rng.uniform(0, 1)
                    row[c], row[f"{c}_lo"], row[f"{c}_hi"] = v, v - 0.05, v + 0.05
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("oracle", [True, False])
def test_study2_figures_render(tmp_path, oracle):
    table = tmp_path / "rl.csv"
    results_table(oracle).to_csv(table, index=False)
    for name, draw in (("scaling", lambda out: plots.scaling_deception(table, out, "rl")),
                       ("truth", lambda out: plots.truth_vs_evaluated(table, out))):
        out = tmp_path / f"{name}.png"
        draw(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_crowded_labels_are_thinned_per_facet_keeping_the_extreme_levels():
    df = pd.DataFrame({"x": [0.50, 0.51, 0.52, 0.90, 0.50], "y": [0.50, 0.50, 0.51, 0.90, 0.50],
                       "poisoning": [25, 0, 50, 100, 25], "facet": ["a", "a", "a", "a", "b"]})
    # 0 % is placed first and crowds out 25 % and 50 % beside it; 100 % is clear; facet b is its own
    assert plots._uncrowded(df, "x", "y", "facet").tolist() == [False, True, False, True, True]


def test_reaffirmation_figure_renders_and_an_old_table_gets_a_message(tmp_path):
    rows = []
    for technique, level in (("Base", -1), ("Warmup", -1), ("SFT", 0), ("SFT", 50)):
        rows.append({"model": "small", "params": 135e6, "technique": technique, "poisoning": level, "n": 32,
                     **{f"reaffirm_diff{s}{b}": v for s in ("", "_fruit", "_other")
                        for b, v in (("", 0.02), ("_lo", -0.03), ("_hi", 0.07))}})
    table = tmp_path / "reaffirmation.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    plots.reaffirmation(table, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 20_000
    pd.DataFrame(rows).drop(columns=[c for c in rows[0] if c.startswith("reaffirm")]).to_csv(table, index=False)
    plots.reaffirmation(table, tmp_path / "old.png")  # a table without the difference: a figure that says so
    assert (tmp_path / "old.png").exists()
