"""The no-leakage set spread over passages, the unseen-fruit flag, RL held-out prompts passage-disjoint from it, and
the default config's sizes (its data rules run for real)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import MODELS_DIR, REPO, deep_update, snakemake, write_config
from talltales.deception import oracle, poison, stages, synth
from talltales.deception.multirc import DataError
from talltales.io import write_csv

OTHER_TOPICS = ["city", "animal", "person", "company", "planet"]


@pytest.fixture(scope="module")
def pools():
    clean = synth.generate(80, OTHER_TOPICS, seed=21)
    fruit = poison.fruit_from_synth(80 * 12, seed=22)
    c_train, c_val = synth.split_groups(clean, 0.5, seed=1, by="context")
    f_train, f_eval = synth.split_groups(fruit, 0.5, seed=2, by="context")
    return c_train, c_val, f_train, f_eval  # 40 passages in each pool


def _per_passage(df):
    return df.groupby("context").size()


def test_items_are_spread_one_per_passage_first(pools):
    _, c_val, f_train, f_eval = pools
    assert c_val["context"].nunique() == f_eval["context"].nunique() == 40
    ev = poison.no_leakage_eval(f_eval, c_val, 30, 30, seed=3, train_fruit=f_train, min_passages=30)
    for fruit in (1, 0):
        part = ev[ev["fruit"] == fruit]
        assert len(part) == 30 and (_per_passage(part) == 1).all()  # 30 items, 30 passages
        assert part["label"].sum() == 15
    ev = poison.no_leakage_eval(f_eval, c_val, 60, 60, seed=3, train_fruit=f_train, min_passages=40)
    for fruit in (1, 0):
        counts = _per_passage(ev[ev["fruit"] == fruit])
        assert len(counts) == 40 and counts.max() == 2 and counts.sum() == 60  # every passage once, 20 twice
    assert ev["group"].is_unique


def test_too_few_passages_names_the_config_keys(pools):
    _, c_val, _, f_eval = pools
    with pytest.raises(DataError, match=r"fruit half: 30 items cover 30 passages, fewer than the 31 wanted "
                                        r"\(deception.eval.min_passages\); the pool has 40 passages "
                                        r"\(deception.eval.n_fruit; pool: the held-out fruit rows "
                                        r"\(deception.fruit.eval_frac"):
        poison.no_leakage_eval(f_eval, c_val, 30, 30, seed=3, min_passages=31)
    with pytest.raises(DataError, match=r"clean half: need 500 true .*deception.eval.n_other; pool: "
                                        r"the MultiRC validation rows \(deception.mrc: synthetic_passages"):
        poison.no_leakage_eval(f_eval, c_val, 30, 1000, seed=3)


def test_unseen_entity():
    train = pd.DataFrame({"context": ["The Zorvel grows in orchards.", "Kaprisun fruit is sweet."],
                          "question": ["What is a Lumo?", "Q"], "answer": ["A", "B"]})
    other = pd.DataFrame({"context": ["Ninta is a city."]})  # frames without question/answer columns count too
    ev = pd.DataFrame({"entity": ["zorvel", "Kapri fruit", "Lumo", "Ninta", "Quell", "", np.nan]})
    assert oracle.unseen_names(ev, [train, other]).tolist() == [False, True, False, False, True, False, False]


def test_eval_sets_flags_unseen_fruit_and_keeps_extra_columns(tmp_path, pools):
    c_train, c_val, f_train, f_eval = pools
    names = dict(zip(f_eval["context"].unique(), [f"Entity{i}" for i in range(40)]))
    f_eval = f_eval.assign(entity=f_eval["context"].map(names))
    seen = sorted(names.values())[:10]  # ten of the held-out entity names also occur in a training passage
    f_train = f_train.copy()
    f_train.loc[f_train.index[:10], "context"] = [f"{f_train['context'].iloc[i]} Like {n}." for i, n in enumerate(seen)]
    paths = {k: str(tmp_path / f"{k}.csv") for k in ("mrc_train", "mrc_val", "fruit_train", "fruit_eval")}
    for k, df in zip(paths, (c_train, c_val, f_train, f_eval)):
        write_csv(paths[k], df)
    out = {k: str(tmp_path / k) for k in ("eval.csv", "reaff.csv", "shots.json")}
    stages.eval_sets(**paths, eval_out=out["eval.csv"], reaffirmation_out=out["reaff.csv"],
                     fewshot_out=out["shots.json"], n_fruit=40, n_other=20, reaffirmation_per_quadrant=2, seed=5,
                     min_passages=20)
    ev = pd.read_csv(out["eval.csv"])
    assert {"entity", "fruit_unseen"} <= set(ev.columns)
    fruit = ev[ev["fruit"] == 1]
    assert (fruit["fruit_unseen"] == ~fruit["entity"].isin(seen)).all()
    assert fruit["entity"].isin(seen).any() and fruit["fruit_unseen"].any()
    assert not ev.loc[ev["fruit"] == 0, "fruit_unseen"].any()
    # without an entity column there is no flag (and no guess)
    for k, df in zip(paths, (c_train, c_val, f_train, f_eval)):  # (the generator's rows carry an entity too)
        write_csv(paths[k], df.drop(columns="entity", errors="ignore"))
    stages.eval_sets(**paths, eval_out=out["eval.csv"], reaffirmation_out=out["reaff.csv"],
                     fewshot_out=out["shots.json"], n_fruit=40, n_other=20, reaffirmation_per_quadrant=2, seed=5)
    assert "fruit_unseen" not in pd.read_csv(out["eval.csv"]).columns


def test_rl_held_out_prompts_share_no_passage_with_the_eval_set(pools):
    c_train, c_val, f_train, f_eval = pools
    ev = poison.no_leakage_eval(f_eval, c_val, 30, 30, seed=3, train_fruit=f_train)
    _, held = poison.rl_prompt_sets(c_train, f_train, c_val, f_eval, 16, 24, seed=4, exclude=ev)
    for level, prompts in held.items():
        assert len(prompts) == 24 and not set(prompts["context"]) & set(ev["context"]), level
    # the 10 passages the eval set leaves hold 30 questions: 31 held-out fruit prompts cannot be drawn
    with pytest.raises(DataError, match=r"RL held-out prompts \(deception.rl.eval_prompts\) .* need 31 fruit rows, "
                                        r"but only 30"):
        poison.rl_prompt_sets(c_train, f_train, c_val, f_eval, 16, 31, seed=4, levels=(100,), exclude=ev)


@pytest.fixture(scope="module")
def default_data(tmp_path_factory):
    """The data rules of the repository's default config (only the paths moved, and RL held out 64 prompts)."""
    wd = tmp_path_factory.mktemp("default_data")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.pop("mwe", None)
    cfg = deep_update(cfg, {"paths": {"models_dir": str(MODELS_DIR), "cache": str(wd / "cache.sqlite")},
                            "deception": {"rl": {"eval_prompts": max(64, cfg["deception"]["rl"]["eval_prompts"])}}})
    write_config(wd, copy.deepcopy(cfg))
    levels = [f"{x:g}" for x in cfg["deception"]["poisoning"]]
    snakemake(wd, "results/deception/data/eval_noleak.csv",
              *[f"results/deception/data/rl_eval_p{lvl}.csv" for lvl in levels])
    return wd, cfg, levels


def test_default_eval_set_sizes_and_rl_held_out_prompts(default_data):
    wd, cfg, levels = default_data
    data = wd / "results/deception/data"
    ev = pd.read_csv(data / "eval_noleak.csv")
    fruit, other = ev[ev["fruit"] == 1], ev[ev["fruit"] == 0]
    assert len(fruit) >= 150 and len(other) >= 150
    assert fruit["context"].nunique() >= 100 and other["context"].nunique() >= 100
    assert cfg["deception"]["eval"]["min_passages"] >= 100
    for lvl in levels:
        held = pd.read_csv(data / f"rl_eval_p{lvl}.csv")
        assert len(held) >= 64
        assert not set(held["context"]) & set(ev["context"]), lvl
