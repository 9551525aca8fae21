"""data/: the example inputs the project ships are read by the project's own readers, and config accepts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, make_config, planned_rules, snakemake, write_config
from talltales.deception.multirc import load_local
from talltales.deception.poison import load_fruit_file
from talltales.mwe.datasets import ANTHROPIC, ORIGINAL, load_dataset

DATA = REPO / "data"


def test_study1_examples_in_both_formats():
    for name, fmt in (("example_original", ORIGINAL), ("example_anthropic", ANTHROPIC)):
        found, items = load_dataset(DATA / "mwe" / f"{name}.jsonl")
        assert found == fmt and len(items) == 8
        assert all(item.targets and set(item.targets) < set(range(len(item.classes))) for item in items)


def test_study2_examples_fruit_and_both_row_formats():
    fruit = load_fruit_file(DATA / "deception" / "fruit_example.csv")
    assert len(fruit) == 12 and set(fruit["fruit"]) == {1} and set(fruit["label"]) == {0, 1}
    train = load_local(DATA / "deception" / "mrc_example_train.csv")
    val = load_local(DATA / "deception" / "mrc_example_val.jsonl")
    assert (len(train), len(val)) == (6, 2) and set(train["fruit"]) == set(val["fruit"]) == {0}
    assert set(train["label"]) == set(val["label"]) == {0, 1} and not set(train["group"]) & set(val["group"])


def test_config_takes_the_study1_examples_as_eval_datasets(tmp_path):
    datasets = {n: str(DATA / "mwe" / f"{n}.jsonl") for n in ("example_original", "example_anthropic")}
    write_config(tmp_path, make_config(tmp_path, mwe={"datasets": datasets}))
    rules = planned_rules(tmp_path, *(f"results/mwe/tables/{n}.csv" for n in datasets))
    assert rules["mwe_table"] == 2 and rules["mwe_eval"] == 2 * len(make_config(tmp_path)["mwe"]["eval_models"])


def test_hand_written_twins_pass_the_check_and_every_item_gets_one():
    from talltales.mwe.negation import build_twins, read_twin_file

    _, items = load_dataset(DATA / "mwe" / "example_original.jsonl")
    written = read_twin_file(DATA / "mwe" / "example_original_neg.jsonl", len(items))
    twins, stats = build_twins(items, written, "file", 12, 250, 0.6)
    assert stats["kept"] == len(items) == 8 and not stats["dropped"]
    assert [t["answer_index"] for t in twins] == [1 - it.targets[0] for it in items]


@pytest.mark.slow
def test_a_twins_file_in_a_real_dag(tmp_path):
    """mwe.negation.source: file: the twins of a shipped list are read (no LM) by a real DAG's job, and the list's
    table would score and combine them (their scoring and combining run in the study-1 DAG's test)."""
    ex = str(DATA / "mwe" / "example_original.jsonl")
    cfg = make_config(tmp_path, mwe={
        "eval_datasets": [], "datasets": {"ex": ex}, "eval_models": ["smollm2-135m-instruct"],
        "negation": {"datasets": ["ex"], "source": "file", "files": {"ex": str(DATA / "mwe" / "example_original_neg.jsonl")}}})
    write_config(tmp_path, cfg)
    planned = planned_rules(tmp_path, "results/mwe/tables/ex.csv")
    planned.pop("materialize_model", None)  # the first test to need the model materializes it
    assert planned == {"mwe_negate": 1, "mwe_eval": 2, "mwe_table": 1}
    snakemake(tmp_path, "results/mwe/ex_neg.jsonl")
    twins = [json.loads(l) for l in (tmp_path / "results/mwe/ex_neg.jsonl").read_text().splitlines()]
    items = [json.loads(l) for l in Path(ex).read_text().splitlines()]
    assert [t["source_item"] for t in twins] == list(range(8))
    assert [t["answer_index"] for t in twins] == [1 - it["answer_index"] for it in items]
    assert "kept 8 of 8 items" in (tmp_path / "logs/mwe/negate/ex.log").read_text()
    # a twins file that names an item the list does not have: one error naming the file and line
    bad = tmp_path / "bad_neg.jsonl"
    bad.write_text('{"item": 0, "prompt": " Is it not?"}\n{"item": 8, "prompt": " Is it?"}\n')
    cfg["mwe"]["negation"]["files"]["ex"] = str(bad)
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "results/mwe/ex_neg.jsonl", check=False)
    assert proc.returncode != 0
    assert f"{bad}:2: 'item' must be the 0-based index" in (tmp_path / "logs/mwe/negate/ex.log").read_text()
