"""`talltales score` as a subprocess on files written here: responses shaped like logged OpenAI completions
``choices[0]`` objects (text, logprobs.tokens, logprobs.top_logprobs) without class_logprobs, as in the
original study's saved API responses."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
TALLTALES = shutil.which("talltales")
pytestmark = pytest.mark.skipif(TALLTALES is None, reason="the talltales console script is not on PATH")

YN = [" Yes", " No"]
ANSWERS = [1, 0, 1, 0, 1]  # No, Yes, No, Yes, No


def choice(text: str, top: dict[str, float]) -> dict:
    return {
        "text": text,
        "index": 0,
        "logprobs": {
            "tokens": [text],
            "token_logprobs": [top.get(text, -9.0)],
            "top_logprobs": [top],
            "text_offset": [0],
        },
        "finish_reason": "length",
    }


# Model A: greedy right on items 1 and 4 (2/5); by top-k log-probs right on 1 and 4 of the 4 items where
# any class is in the top-k (item 3 lacks " No" and picks " Yes"; item 5 has neither) -> 2/4.
A = [
    choice(" No", {" No": -0.2, " Yes": -1.8, " Maybe": -3.0}),
    choice(" No", {" No": -0.5, " Yes": -1.0}),
    choice(" Yes", {" Yes": -0.1, " Maybe": -3.0}),
    choice(" Yes", {" Yes": -0.3, " No": -1.4}),
    choice("\n", {"\n": -0.1, " The": -2.5}),
]
# Model B: greedy always " Yes" (right on the 2 Yes items), but " No" on top in the top-k of items 3 and 5
B = [
    choice(" Yes", {" Yes": -0.6, " No": -0.9}),
    choice(" Yes", {" Yes": -0.1, " No": -2.9}),
    choice(" Yes", {" No": -0.4, " Yes": -0.5}),
    choice(" Yes", {" Yes": -0.2, " No": -2.0}),
    choice(" Yes", {" No": -0.3, " Yes": -0.7}),
]


def write_jsonl(path: Path, recs) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_jsonl(tmp_path / "harsh.jsonl", [
        {"prompt": f" Is claim {i} true?", "classes": YN, "answer_index": a} for i, a in enumerate(ANSWERS)
    ])


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([TALLTALES, "score", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_hand_computed(tmp_path, dataset):
    ra = write_jsonl(tmp_path / "model-a.jsonl", A)
    (tmp_path / "runs").mkdir()
    rb = write_jsonl(tmp_path / "runs" / "model_b.jsonl", B)
    out = tmp_path / "out" / "table.csv"  # parent folder is created
    res = run("--dataset", dataset, "--responses", ra, rb, "--out", out, "--bootstrap", 200)
    assert res.returncode == 0, res.stderr
    rows = read_csv(out)
    assert [r["model"] for r in rows] == ["model-a", "model_b"]
    a, b = rows
    for r in rows:
        assert r["dataset"] == "harsh" and r["metric"] == "accuracy" and r["n"] == "5"
        assert r["kind"] == "" and r["params"] == ""
    assert float(a["acc_greedy"]) == pytest.approx(2 / 5)
    assert float(a["acc_choice"]) == pytest.approx(2 / 4)
    assert (a["n_missing"], a["n_unscored"]) == ("2", "1")
    assert float(a["yes_rate"]) == pytest.approx(2 / 5)
    # calibrated on items 1, 2, 4 (both classes measured): mean Yes -31/30, mean No -0.7 -> No, No, Yes
    assert float(a["acc_calibrated"]) == pytest.approx(2 / 3)
    mass_a = [math.exp(-0.2) + math.exp(-1.8), math.exp(-0.5) + math.exp(-1.0), math.exp(-0.1),
              math.exp(-0.3) + math.exp(-1.4), 0.0]
    assert float(a["class_mass"]) == pytest.approx(sum(mass_a) / 5, rel=1e-6)

    assert float(b["acc_greedy"]) == pytest.approx(2 / 5)
    assert float(b["yes_rate"]) == 1.0
    assert float(b["acc_choice"]) == pytest.approx(4 / 5)  # item 1 wrong (Yes -0.6 > No -0.9)
    # calibration: mean Yes -0.42, mean No -1.3 -> centred diffs Yes-No: -0.58, 1.92, -0.98, 0.92, -1.28
    assert float(b["acc_calibrated"]) == pytest.approx(1.0)
    assert (b["n_missing"], b["n_unscored"]) == ("0", "0")
    p_yes = [1 / (1 + math.exp(-(y - n))) for y, n in [(-0.6, -0.9), (-0.1, -2.9), (-0.5, -0.4), (-0.2, -2.0), (-0.7, -0.3)]]
    assert float(b["p_yes"]) == pytest.approx(sum(p_yes) / 5, rel=1e-6)

    for r in rows:
        for m in ("acc_greedy", "acc_choice", "acc_calibrated"):
            assert float(r[f"{m}_lo"]) <= float(r[m]) <= float(r[f"{m}_hi"])
    # the printed summary names both models; without --config it says why kind and params are empty
    assert "model-a" in res.stdout and "model_b" in res.stdout
    assert "kind and params are left empty for model-a, model_b (no --config given" in res.stderr


def test_score_with_config_fills_kind_and_params(tmp_path, dataset):
    r1 = write_jsonl(tmp_path / "smollm2-135m-instruct.jsonl", A)
    r2 = write_jsonl(tmp_path / "gemma3-270m.jsonl", B)
    r3 = write_jsonl(tmp_path / "not-in-registry.jsonl", B)
    out = tmp_path / "t.csv"
    res = run("--dataset", dataset, "--responses", r1, r2, r3, "--out", out, "--config", REPO_CONFIG,
              "--bootstrap", 200, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {r["model"]: r for r in read_csv(out)}
    assert rows["smollm2-135m-instruct"]["kind"] == "instruct"
    assert float(rows["smollm2-135m-instruct"]["params"]) == 134515008
    assert rows["gemma3-270m"]["kind"] == "base"
    assert float(rows["gemma3-270m"]["params"]) == 268098176
    assert rows["not-in-registry"]["kind"] == "" and rows["not-in-registry"]["params"] == ""
    assert f"left empty for not-in-registry (not in the model registry of {REPO_CONFIG}" in res.stderr
    assert float(rows["gemma3-270m"]["acc_choice"]) == pytest.approx(4 / 5)


def test_bad_dataset_line_exits_2_with_file_and_line(tmp_path):
    ds = write_jsonl(tmp_path / "broken.jsonl", [
        {"prompt": " Q1?", "classes": YN, "answer_index": 0},
        {"prompt": " Q2?", "classes": YN, "answer_index": 5},
    ])
    r = write_jsonl(tmp_path / "m.jsonl", A[:2])
    out = tmp_path / "t.csv"
    res = run("--dataset", ds, "--responses", r, "--out", out)
    assert res.returncode == 2
    assert f"{ds}:2:" in res.stderr and "answer_index" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_response_count_mismatch_exits_2(tmp_path, dataset):
    r = write_jsonl(tmp_path / "m.jsonl", A[:3])
    res = run("--dataset", dataset, "--responses", r, "--out", tmp_path / "t.csv")
    assert res.returncode == 2
    assert str(r) in res.stderr and "has 3 responses but the dataset has 5 items" in res.stderr


def test_duplicate_model_names_are_refused(tmp_path, dataset):
    """Two files with the same stem would silently become one model: refused."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    r1 = write_jsonl(tmp_path / "x" / "m.jsonl", A)
    r2 = write_jsonl(tmp_path / "y" / "m.jsonl", B)
    res = run("--dataset", dataset, "--responses", r1, r2, "--out", tmp_path / "t.csv")
    assert res.returncode == 2
    assert "['m']" in res.stderr and "more than once" in res.stderr
