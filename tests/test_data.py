"""data/: the example inputs the project ships are read by the project's own readers, and config accepts them."""

from __future__ import annotations

from conftest import REPO, make_config, planned_rules, write_config
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
