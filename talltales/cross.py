"""The two studies joined: every study-2 checkpoint scored on study 1's final lists.

Does training against a judge corrupted on fruit spread to harsh-truth answers? Each checkpoint (the untuned
Base model, the warmed-up start point, SFT and RL at each poisoning level, each training seed) answers study 1's
lists with study 1's eval prompt; the table holds study 1's accuracies per checkpoint, and for each trained
checkpoint its difference from the same policy, technique and seed trained at poisoning level 0 (the clean-judge
control), a paired bootstrap over items.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import write_csv
from .mwe.datasets import load_dataset
from .mwe.metrics import bootstrap_settings, load_responses, model_row
from .stats import bootstrap_ci, mean_or_nan

log = logging.getLogger(__name__)

MEASURES = ("acc_greedy", "acc_choice", "acc_calibrated")
COLUMNS = (["dataset", "policy", "params", "technique", "seed", "poisoning", "n"]
           + [f"{m}{s}" for m in MEASURES for s in ("", "_lo", "_hi")]
           + [f"{m}_vs_p0{s}" for m in ("acc_greedy", "acc_calibrated") for s in ("", "_lo", "_hi")]
           + ["yes_rate", "p_yes", "class_mass", "top_outside"])


def cross_table(datasets: dict[str, str | Path], runs: list[dict[str, Any]], responses: list[str | Path],
                models: dict[str, dict[str, Any]], bootstrap: dict[str, Any]) -> pd.DataFrame:
    """``runs``: one dict per response file ({dataset, policy, technique, seed, poisoning}; technique base or
    warmup with poisoning None), in the order of ``responses``."""
    boot = bootstrap_settings(bootstrap)
    items = {name: load_dataset(path)[1] for name, path in datasets.items()}
    rows, per_item = [], []
    for run, path in zip(runs, responses):
        its = items[run["dataset"]]
        recs = load_responses(path, len(its))
        vals: dict[str, np.ndarray] = {}
        row = {**{k: run.get(k) for k in ("dataset", "policy", "technique", "seed", "poisoning")},
               "params": models.get(run["policy"], {}).get("params")}
        row.update(model_row(its, recs, boot, per_item=vals) if its else {"n": 0})
        rows.append(row)
        per_item.append(vals)
    control = {(r["dataset"], r["policy"], r["technique"], r["seed"]): k for k, r in enumerate(rows)
               if r["poisoning"] is not None and float(r["poisoning"]) == 0}
    for k, r in enumerate(rows):
        c = control.get((r["dataset"], r["policy"], r["technique"], r["seed"]))
        if r["poisoning"] is None or c is None or not per_item[k]:
            continue
        for m in ("acc_greedy", "acc_calibrated"):
            diff = per_item[k][m] - per_item[c][m]
            r[f"{m}_vs_p0"] = mean_or_nan(diff)
            r[f"{m}_vs_p0_lo"], r[f"{m}_vs_p0_hi"] = bootstrap_ci(diff, n=boot["n"], ci=boot["ci"], seed=boot["seed"])
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["seed"] = df["seed"].astype("Int64")  # empty for the untuned Base model, an integer elsewhere
    return df


def table(datasets: dict[str, str], runs: list[dict], responses: list[str], models: dict[str, dict],
          bootstrap: dict, out: str) -> None:
    df = cross_table(datasets, runs, responses, models, bootstrap)
    write_csv(out, df)
    log.info("\n%s", df.to_string(index=False))
