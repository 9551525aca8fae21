"""Training seeds (deception.seeds): one warm-up, SFT and RL run per seed on shared data and judges; tables
aggregate across seeds."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from conftest import make_config, planned_rules, snakemake, write_config
from talltales.config import ConfigError, validate
from talltales.deception import metrics, stages

POLICY = "smollm2-135m-instruct"
MODELS = {"tiny": {"params": 1000}}


# ------------------------------------------------------------------------------------- aggregation by hand


def test_aggregate_seeds_by_hand():
    """Three seeds: values averaged, each side of an interval = sqrt(mean item half-width^2 + (t * sd / sqrt(S))^2),
    columns equal in every seed kept as they are; the Base row (no seed) passes through."""
    t = pd.DataFrame({
        "model": ["m"] * 4, "technique": ["RL", "RL", "RL", "Base"], "poisoning": [100.0, 100.0, 100.0, -1.0],
        "shots": [0] * 4,
        "rate": [0.4, 0.5, 0.6, 0.9], "rate_lo": [0.3, 0.4, 0.5, 0.8], "rate_hi": [0.45, 0.6, 0.75, 0.95],
        "clean score": [0.2, 0.2, 0.2, 0.7], "clean score lo": [0.1, 0.1, 0.1, 0.6], "clean score hi": [0.3] * 3 + [0.8],
        "n": [16, 16, 16, 16],
        "seed": pd.array([62, 63, 64, None], dtype="Int64"),
    })
    out = metrics.aggregate_seeds(t).set_index("technique")
    rl = out.loc["RL"]
    t975_df2 = 4.302653  # Student t, 97.5 % quantile, 2 degrees of freedom
    h_seeds = t975_df2 * 0.1 / math.sqrt(3)  # sd of (0.4, 0.5, 0.6) = 0.1
    assert rl["rate"] == pytest.approx(0.5)
    assert rl["rate_lo"] == pytest.approx(0.5 - math.sqrt(0.1 ** 2 + h_seeds ** 2), abs=1e-6)
    assert rl["rate_hi"] == pytest.approx(0.5 + math.sqrt(0.1 ** 2 + h_seeds ** 2), abs=1e-6)  # (0.05+0.1+0.15)/3
    # no spread across seeds: the item interval alone
    assert (rl["clean score"], rl["clean score lo"], rl["clean score hi"]) == pytest.approx((0.2, 0.1, 0.3))
    assert rl["n"] == 16 and isinstance(rl["n"], (int, np.integer))
    assert rl["n_seeds"] == 3 and rl["seeds"] == "62 63 64"
    base = out.loc["Base"]
    assert (base["rate"], base["rate_lo"], base["rate_hi"], base["n_seeds"], base["seeds"]) == (0.9, 0.8, 0.95, 0, "")
    assert "seed" not in out.columns


def test_aggregate_seeds_one_seed_is_that_seed_and_duplicates_fail():
    t = pd.DataFrame({"model": ["m"], "technique": ["SFT"], "poisoning": [0.0], "shots": [0], "rate": [0.25],
                      "rate_lo": [0.1], "rate_hi": [0.3], "seed": pd.array([62], dtype="Int64")})
    out = metrics.aggregate_seeds(t)
    assert out.drop(columns=["n_seeds", "seeds"]).equals(t.drop(columns="seed"))
    with pytest.raises(ValueError, match="one row per seed"):
        metrics.aggregate_seeds(pd.concat([t, t], ignore_index=True))


# ------------------------------------------------------------------ the tables from hand-made answer files


def _answers(path, technique, poisoning, seed, p_clean, shots=0):
    rng = np.random.default_rng(len(p_clean))
    n = len(p_clean)
    df = pd.DataFrame({
        "p_clean": p_clean, "p_corrupted": rng.uniform(size=n), "fruit": [i % 2 for i in range(n)],
        "shots": shots, "model": "tiny", "technique": technique, "poisoning": poisoning, "seed": seed,
        "context": [f"passage {i}" for i in range(n)],  # what the cluster bootstrap resamples: passages
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return str(path)


def _files(tmp_path, seeds):
    rng = np.random.default_rng(0)
    files = [_answers(tmp_path / "base.csv", "Base", -1.0, None, rng.uniform(size=20))]
    for s in seeds:
        files.append(_answers(tmp_path / f"warm{s}.csv", "Warmup", -1.0, s, rng.uniform(size=20)))
        files.append(_answers(tmp_path / f"rl{s}.csv", "RL", 100.0, s, rng.uniform(size=20)))
    return files


def test_one_seed_results_equal_the_per_run_table(tmp_path):
    """With one training seed results.csv holds the numbers of the per-run table (no aggregation effect)."""
    files = _files(tmp_path, [62])
    stages.results_table(files, tmp_path / "results.csv", MODELS, 200, by_seed_out=tmp_path / "by_seed.csv")
    got = pd.read_csv(tmp_path / "results.csv")
    runs = [({"model": "tiny", "technique": df["technique"].iloc[0], "poisoning": float(df["poisoning"].iloc[0]),
              "shots": 0, "params": 1000}, df) for df in map(pd.read_csv, files)]
    want = metrics.results_table(runs, {"n": 200, "seed": 0, "ci": 0.95})
    want = want.sort_values(["model", "shots", "technique", "poisoning"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert got.set_index("technique")["n_seeds"].to_dict() == {"Base": 0, "RL": 1, "Warmup": 1}
    by_seed = pd.read_csv(tmp_path / "by_seed.csv")
    assert by_seed.set_index("technique")["seed"].fillna(-1).to_dict() == {"Base": -1, "RL": 62, "Warmup": 62}


def test_two_seed_results_are_means_with_wider_intervals(tmp_path):
    files = _files(tmp_path, [62, 63])
    stages.results_table(files, tmp_path / "results.csv", MODELS, 200, by_seed_out=tmp_path / "by_seed.csv")
    by_seed = pd.read_csv(tmp_path / "by_seed.csv")
    got = pd.read_csv(tmp_path / "results.csv").set_index("technique")
    assert len(by_seed) == 5 and sorted(by_seed[by_seed["technique"] == "RL"]["seed"]) == [62, 63]
    assert len(got) == 3 and got.loc["RL", "seeds"] == "62 63" and got.loc["Base", "n_seeds"] == 0
    rl = by_seed[by_seed["technique"] == "RL"]
    for col in ("clean score", "falsehood_gap", "poison fr"):
        assert got.loc["RL", col] == pytest.approx(rl[col].mean())
    # the two seeds' answers differ, so the interval is wider than either seed's item interval
    for col, lo, hi in (("clean score", "clean score_lo", "clean score_hi"),
                        ("falsehood_gap", "falsehood_gap_lo", "falsehood_gap_hi")):
        assert got.loc["RL", hi] - got.loc["RL", lo] > (rl[hi] - rl[lo]).max()
        assert got.loc["RL", lo] < got.loc["RL", col] < got.loc["RL", hi]
    base = by_seed[by_seed["technique"] == "Base"].iloc[0]
    assert got.loc["Base", "clean score"] == base["clean score"]


def test_the_tidy_table_holds_every_number_of_both_tables_once(tmp_path):
    """results_tidy.csv: snake_case columns, one row per run x seed x metric with its CI; the across-seed rows are
    results.csv's numbers, the per-seed rows results_by_seed.csv's; Base appears once (no seed)."""
    files = _files(tmp_path, [62, 63])
    stages.results_table(files, tmp_path / "results.csv", MODELS, 200, by_seed_out=tmp_path / "by_seed.csv",
                         tidy_out=tmp_path / "tidy.csv")
    tidy = pd.read_csv(tmp_path / "tidy.csv")
    assert list(tidy.columns) == metrics.TIDY_COLUMNS
    assert all(re.fullmatch(r"[a-z0-9_]+", m) for m in tidy["metric"].unique())
    assert {"clean_score", "truths_clean_judge", "falsehoods_biased_judge", "poison_fr", "fr_diff",
            "falsehood_gap", "n_fruit"} <= set(tidy["metric"])
    keys = ["model", "technique", "poisoning", "shots", "seed", "over_seeds", "metric"]
    assert not tidy.duplicated(keys).any()
    got = pd.read_csv(tmp_path / "results.csv").set_index("technique")
    by_seed = pd.read_csv(tmp_path / "by_seed.csv")
    row = tidy[(tidy["technique"] == "RL") & tidy["over_seeds"] & (tidy["metric"] == "fr_diff")].iloc[0]
    assert (row["value"], row["lo"], row["hi"]) == pytest.approx(
        (got.loc["RL", "fr_diff"], got.loc["RL", "fr_diff_lo"], got.loc["RL", "fr_diff_hi"]))
    assert pd.isna(row["seed"]) and row["n_seeds"] == 2
    seed63 = by_seed[(by_seed["technique"] == "RL") & (by_seed["seed"] == 63)].iloc[0]
    row = tidy[(tidy["technique"] == "RL") & (tidy["seed"] == 63) & (tidy["metric"] == "clean_score")].iloc[0]
    assert (row["value"], row["lo"], row["hi"]) == pytest.approx(
        (seed63["clean score"], seed63["clean score_lo"], seed63["clean score_hi"]))
    base = tidy[tidy["technique"] == "Base"]
    assert base["over_seeds"].all() and base["seed"].isna().all() and len(base) == base["metric"].nunique()
    count = tidy[(tidy["technique"] == "RL") & (tidy["seed"] == 62) & (tidy["metric"] == "n_fruit")].iloc[0]
    assert pd.isna(count["lo"]) and pd.isna(count["hi"])  # a count has no interval


def test_reaffirmation_table_averages_seeds(tmp_path):
    files = []
    for seed, reaffirmed in ((62, [1, 1, 0, 0]), (63, [1, 1, 1, 1]), (None, [0, 0, 0, 1])):
        df = pd.DataFrame({"label": [1, 0, 1, 0], "fruit": [1, 1, 0, 0], "reaffirmed": reaffirmed,
                           "p_reaffirm": 0.5, "p_yes_option1": 0.6, "p_yes_option2": 0.4, "model": "tiny",
                           "technique": "RL" if seed else "Base", "poisoning": 100.0 if seed else -1.0, "seed": seed})
        files.append(str(tmp_path / f"r{seed}.csv"))
        df.to_csv(files[-1], index=False)
    stages.reaffirm_table(files, tmp_path / "reaffirmation.csv", MODELS)
    t = pd.read_csv(tmp_path / "reaffirmation.csv").set_index("technique")
    assert t.loc["RL", "total_reaffirmations"] == pytest.approx(3.0)  # (2 + 4) / 2
    assert t.loc["RL", "lie_truth_ratio"] == pytest.approx((1 / 1 + 2 / 2) / 2)
    assert (t.loc["RL", "seeds"], t.loc["Base", "n_seeds"], t.loc["Base", "total_reaffirmations"]) == ("62 63", 0, 1)


# ------------------------------------------------------------------------------------------ config and DAG


def test_seeds_default_and_bad_seeds(tmp_path):
    cfg = make_config(tmp_path, studies=("deception",))
    del cfg["deception"]["seeds"]
    assert validate(cfg)["deception"]["seeds"] is None  # the rules then train with [deception.seed]
    for bad in ([62, 62], []):
        with pytest.raises(ConfigError, match=r"deception\.seeds"):
            validate(make_config(tmp_path, studies=("deception",), deception={"seeds": bad}))


def _dry_run(wd, *targets):
    return snakemake(wd, "-n", *targets).stdout


def test_two_seeds_plan_training_and_evaluation_per_seed_and_shared_judges(tmp_path):
    write_config(tmp_path, make_config(tmp_path, studies=("deception",), deception={"seeds": [62, 63]}))
    rules = planned_rules(tmp_path, "all")
    levels = 2  # tests/config: poisoning [0, 100]
    assert (rules["deception_warmup"], rules["deception_sft"], rules["deception_rl"]) == (2, 2 * levels, 2 * levels)
    assert rules["deception_eval"] == 2 * (1 + 2 * levels) and rules["deception_eval_base"] == 1
    assert (rules["deception_train_judge"], rules["deception_policy_data"], rules["deception_table"]) == (2, levels, 1)
    out = _dry_run(tmp_path, "all")
    for seed in (62, 63):
        for path in (f"results/deception/policies/warmup/{POLICY}/seed{seed}",
                     f"results/deception/policies/sft/{POLICY}/seed{seed}/p0",
                     f"results/deception/policies/rl/{POLICY}/seed{seed}/p100",
                     f"results/deception/answers/{POLICY}/rl/seed{seed}/p100_s0.csv",
                     f"results/deception/answers/{POLICY}/warmup/seed{seed}/untuned_s0.csv",
                     f"results/deception/reaffirmation/{POLICY}/sft/seed{seed}/p0.csv"):
            assert path in out, path
    assert f"results/deception/answers/{POLICY}/base/untuned_s0.csv" in out
    # each seed's RL starts from that seed's warm-up, against the one corrupted judge
    rl_jobs = [job for job in re.split(r"\n\[[^\]]+\]\n", out) if job.startswith("rule deception_rl:")]
    assert len(rl_jobs) == 4
    for job in rl_jobs:
        seed = re.search(r"seed=(\d+)", job).group(1)
        inputs = re.search(r"input: (.*)", job).group(1).split(", ")
        assert [p for p in inputs if "/warmup/" in p] == [f"results/deception/policies/warmup/{POLICY}/seed{seed}"]
        assert "results/deception/judges/corrupted" in inputs


def test_one_figure_with_two_seeds_needs_no_sft_jobs(tmp_path):
    write_config(tmp_path, make_config(tmp_path, studies=("deception",), deception={"seeds": [62, 63]}))
    rules = planned_rules(tmp_path, "results/plots/scaling_rl.png")
    assert rules["deception_rl"] == 4 and rules["deception_warmup"] == 2 and "deception_sft" not in rules
    assert "deception_table" not in rules and rules["deception_technique_table"] == 1
# A real two-seed run (seed 63 added to a finished run): tests/test_workflow_deception.py
