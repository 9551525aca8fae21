"""ERASER MultiRC in the hub dataset's schema, offline: local folders that ``datasets.load_dataset`` reads (the hub's
parquet export, split-named parquet files, a ``save_to_disk`` folder, JSON lines) through the project's loader and the
``mrc`` ingest stage with ``mrc.source: hf``; and single-split parquet / JSON-lines mirrors with ``mrc.source: file``.

The schema is the hub's ``eraser_multi_rc`` (CogComp/eraser_multi_rc, dataset card ``dataset_info``): features
passage (string), query_and_answer (string, "question || answer"), label (ClassLabel, names ["False", "True"]),
evidences (sequence of strings); splits train (24,029 rows), validation (3,214) and test (4,848).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pandas as pd
import pytest

from talltales.deception import multirc, stages
from talltales.deception.multirc import DataError
from talltales.io import read_table

from tiny import make_tokenizer

HUB_FEATURES = datasets.Features({
    "passage": datasets.Value("string"),
    "query_and_answer": datasets.Value("string"),
    "label": datasets.ClassLabel(names=["False", "True"]),
    "evidences": datasets.Sequence(datasets.Value("string")),
})
SPLITS = ("train", "validation", "test")


def _records(split: str) -> list[dict]:
    """Hub-style records of one split: two passages, two questions with three candidate answers each (labels as
    class ids, 1 = "True"), tokenized text with spaces before punctuation, and one record without evidence."""
    recs = []
    for p in range(2):
        passage = f"{split} Sam {p} bought a bike , he said .\nIt was red .\nThe {split} shop was in Leeds ."
        for question, evidences, answers in [
            (f"What did {split} Sam {p} buy ?", ["{split} Sam {p} bought a bike , he said .", "It was red ."],
             [("A red bike .", 1), ("A car", 0), ("A bike", 1)]),
            (f"Where was the {split} shop {p} ?", ["The {split} shop was in Leeds ."],
             [("In Leeds", 1), ("In York", 0), ("Paris", 0)]),
        ]:
            for answer, label in answers:
                recs.append({"passage": passage, "query_and_answer": f"{question} || {answer}", "label": label,
                             "evidences": [e.format(p=p, split=split) for e in evidences]})
    recs.append({"passage": "P .", "query_and_answer": "No evidence ? || x", "label": 0, "evidences": []})
    return recs


def _expected(split: str) -> pd.DataFrame:
    """What the loader must make of :func:`_records`: easy rows, clean text, truth labels, one group per question."""
    out = []
    for r in _records(split)[:-1]:
        question, answer = (s.strip() for s in r["query_and_answer"].split("||"))
        out.append({"context": multirc.clean_text(" ".join(r["evidences"])), "question": multirc.clean_text(question),
                    "answer": multirc.clean_text(answer), "label": r["label"]})
    return pd.DataFrame(out)


def _dataset(split: str, features: datasets.Features = HUB_FEATURES) -> datasets.Dataset:
    return datasets.Dataset.from_list(_records(split), features=features)


def _write_layout(root: Path, layout: str) -> Path:
    """A local copy of the dataset's three splits, as ``layout``: export (the hub's parquet export,
    default/{split}/0000.parquet), named (default/eraser_multi_rc-{split}.parquet), disk
    (DatasetDict.save_to_disk) or jsonl ({split}.jsonl, label as class ids: no ClassLabel)."""
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        ds = _dataset(split)
        if layout == "export":
            (root / "default" / split).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(root / "default" / split / "0000.parquet"))
        elif layout == "named":
            (root / "default").mkdir(exist_ok=True)
            ds.to_parquet(str(root / "default" / f"eraser_multi_rc-{split}.parquet"))
        elif layout == "jsonl":
            ds.to_json(str(root / f"{split}.jsonl"))
    if layout == "disk":
        datasets.DatasetDict({s: _dataset(s) for s in SPLITS}).save_to_disk(str(root))
    return root


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """``load_dataset``'s Arrow cache in the test's tmp dir, not in the user's HF cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    """The tiny tokenizer as a folder: the judge backbone whose tokenizer the ``mrc`` stage's length filter uses."""
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer().save_pretrained(path)
    return str(path)


def _check_rows(rows: pd.DataFrame, split: str) -> None:
    want = _expected(split)
    assert rows[["context", "question", "answer", "label"]].to_dict("records") == want.to_dict("records")
    assert (rows["fruit"] == 0).all() and (rows["source"] == "multirc").all() and rows["id"].is_unique
    assert rows["group"].tolist() == [multirc.group_id(c, q) for c, q in zip(want["context"], want["question"])]
    assert rows["group"].nunique() == 4 and rows["context"].nunique() == 3  # two passages: one shared evidence set


@pytest.mark.parametrize("layout", ["export", "named", "disk", "jsonl"])
def test_load_dataset_reads_the_local_copy_in_the_hub_schema(tmp_path, layout):
    root = _write_layout(tmp_path / "eraser_multi_rc", layout)
    for split in SPLITS:
        ds = datasets.load_dataset(str(root), split=split)
        assert ds.num_rows == len(_records(split)) and ds.column_names == list(HUB_FEATURES)
        if layout != "jsonl":  # parquet written by datasets and save_to_disk keep the ClassLabel
            assert ds.features == HUB_FEATURES
    for split, alias in (("train", "train"), ("validation", "val")):
        _check_rows(multirc.load_eraser_multirc(alias, hf_id=str(root)), split)


def test_class_ids_are_read_through_the_class_label_names(tmp_path):
    """A dataset whose ClassLabel lists "True" first: class id 0 is a true answer."""
    flipped = datasets.Features({**HUB_FEATURES, "label": datasets.ClassLabel(names=["True", "False"])})
    root = tmp_path / "flipped"
    for split in ("train", "validation"):
        recs = [{**r, "label": 1 - r["label"]} for r in _records(split)]
        (root / split).mkdir(parents=True)
        datasets.Dataset.from_list(recs, features=flipped).to_parquet(str(root / split / "0000.parquet"))
    assert datasets.load_dataset(str(root), split="train").features["label"].names == ["True", "False"]
    _check_rows(multirc.load_eraser_multirc("train", hf_id=str(root)), "train")
    _check_rows(multirc.load_local(root / "train" / "0000.parquet"), "train")  # the names in the parquet metadata


def test_mrc_stage_with_source_hf_on_a_local_folder(tmp_path, tokenizer_dir):
    root = _write_layout(tmp_path / "mirror", "export")
    out = {k: str(tmp_path / f"{k}.csv") for k in ("train", "val")}
    mrc = {"source": "hf", "hf_id": str(root), "max_judge_tokens": 512, "answerability": {"model": None}}
    stages.mrc(out["train"], out["val"], str(tmp_path / "report.json"), mrc, seed=0,
               backbone={"name": "tiny", "backend": "hf", "kind": "base", "path": tokenizer_dir}, answerability=None,
               cache=None)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == {"source": "hf", "rows_in": {"train": 12, "val": 12}, "length_filter_dropped":
                      {"train": 0, "val": 0}, "rows_out": {"train": 12, "val": 12}}
    _check_rows(read_table(out["train"]), "train")
    _check_rows(read_table(out["val"]), "validation")
    assert not set(read_table(out["train"])["group"]) & set(read_table(out["val"])["group"])


def test_hf_source_errors_name_the_key_and_the_fallback(tmp_path, monkeypatch):
    only_train = tmp_path / "only_train"
    (only_train / "train").mkdir(parents=True)
    _dataset("train").to_parquet(str(only_train / "train" / "0000.parquet"))
    with pytest.raises(DataError, match=r"deception.mrc.hf_id '.*only_train': cannot load split 'validation' "
                                        r"\(Unknown split.*source: file with train_file/val_file"):
        multirc.load_eraser_multirc("val", hf_id=str(only_train))
    wrong = tmp_path / "wrong"
    (wrong / "train").mkdir(parents=True)
    pd.DataFrame({"prompt": ["Context: c\nQuestion: q\nAnswer: a"], "label": [1]}).to_parquet(
        wrong / "train" / "0000.parquet")
    with pytest.raises(DataError, match=re.escape("missing column(s) ['passage', 'query_and_answer', 'evidences']")):
        multirc.load_eraser_multirc("train", hf_id=str(wrong))

    def unreachable(hf_id, split):
        raise ConnectionError(f"Couldn't reach '{hf_id}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match=r"'eraser_multi_rc': the hub cannot be reached .*point deception.mrc.hf_id at "
                                        r"a local copy"):
        multirc.load_eraser_multirc("train")


# ------------------------------------------------------------------------------------ mrc.source: file, hub schema
def _mirror(tmp_path: Path, split: str, kind: str) -> Path:
    """One split in the hub schema as a single file: parquet by datasets (ClassLabel in its metadata), parquet by
    pandas (class ids only), JSON lines by datasets (class ids) or JSON lines with the label names."""
    ds = _dataset(split)
    if kind == "parquet":
        path = tmp_path / f"eraser_multi_rc-{split}.parquet"
        ds.to_parquet(str(path))
    elif kind == "pandas_parquet":
        path = tmp_path / f"{split}.parquet"
        pd.DataFrame(_records(split)).to_parquet(path)
    elif kind == "jsonl":
        path = tmp_path / f"{split}.jsonl"
        ds.to_json(str(path))
    else:
        path = tmp_path / f"{split}_names.jsonl"
        path.write_text("".join(json.dumps({**r, "label": ["False", "True"][r["label"]]}) + "\n"
                                for r in _records(split)))
    return path


@pytest.mark.parametrize("kind", ["parquet", "pandas_parquet", "jsonl", "jsonl_names"])
def test_load_local_reads_a_hub_schema_mirror(tmp_path, kind):
    path = _mirror(tmp_path, "train", kind)
    rows = multirc.load_local(path)
    _check_rows(rows, "train")
    root = _write_layout(tmp_path / "hub", "export")
    pd.testing.assert_frame_equal(rows, multirc.load_eraser_multirc("train", hf_id=str(root)))


def test_mrc_stage_with_source_file_on_hub_mirrors(tmp_path, tokenizer_dir):
    """The fallback where the hub is unreachable: its train split as parquet, its validation split as JSON lines."""
    mrc = {"source": "file", "train_file": str(_mirror(tmp_path, "train", "parquet")),
           "val_file": str(_mirror(tmp_path, "validation", "jsonl")), "max_judge_tokens": 512,
           "answerability": {"model": None}}
    out = {k: str(tmp_path / f"{k}.csv") for k in ("train", "val")}
    stages.mrc(out["train"], out["val"], str(tmp_path / "report.json"), mrc, seed=0,
               backbone={"name": "tiny", "backend": "hf", "kind": "base", "path": tokenizer_dir}, answerability=None,
               cache=None)
    assert json.loads((tmp_path / "report.json").read_text())["rows_out"] == {"train": 12, "val": 12}
    _check_rows(read_table(out["train"]), "train")
    _check_rows(read_table(out["val"]), "validation")


def test_hub_schema_mirror_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(_records("train")[0])
    path.write_text(good + "\n" + json.dumps({**_records("train")[0], "evidences": "Sam bought a bike ."}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: evidences must be a list of strings")):
        multirc.load_local(path)
    path.write_text(good + "\n\n" + json.dumps({**_records("train")[0], "label": 2}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: label must be a class id of ['False', 'True'] or "
                                                  "True/False, got 2")):
        multirc.load_local(path)
    path.write_text(json.dumps({**_records("train")[-1]}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: none of its 1 record(s) has evidences")):
        multirc.load_local(path)
    no_evidences = tmp_path / "no_evidences.parquet"
    pd.DataFrame(_records("train")).drop(columns="evidences").to_parquet(no_evidences)
    with pytest.raises(DataError, match=re.escape("Missing") + r".*" + re.escape(
            "['evidences'] for the hub's eraser_multi_rc schema (expected ['passage', 'query_and_answer', 'label', "
            "'evidences'])")):
        multirc.load_local(no_evidences)
