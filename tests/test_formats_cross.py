"""Answer formats (talltales.mwe.metrics.in_format / format_table) and the two studies joined (talltales.cross),
from saved responses, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talltales.cross import cross_table
from talltales.mwe.datasets import Item
from talltales.mwe.metrics import format_table, in_format

YN = [" Yes", " No"]


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def rec(text, class_logprobs, top=None):
    return {"text": text, "class_logprobs": class_logprobs,
            "logprobs": {"tokens": [text], "top_logprobs": [top or {text: -0.1}]}}


def test_in_format_maps_classes_by_position_and_skips_others():
    items = [Item(" Q?", list(YN), [1]), Item(" R?", [" No", " Yes"], [0]), Item(" S?", [" (A)", " (B)"], [0])]
    mapped = in_format(items, YN, ["B", "A"])  # options in the order (A) No, (B) Yes
    assert mapped[0].classes == ["B", "A"] and mapped[0].targets == [1]
    assert mapped[1].classes == ["A", "B"] and mapped[1].targets == [0]  # " No" -> "A" wherever it stands
    assert mapped[2] is None


def test_format_table_accuracy_mass_and_top_outside(tmp_path):
    ds = write(tmp_path / "ds.jsonl", [{"prompt": f" Q{i}?", "classes": YN, "answer_index": i % 2} for i in range(4)])
    # format "nl" (classes "Yes"/"No"): items 0, 1 right; item 2 wrong; item 3's top token is a newline
    nl = [rec("Yes", {"Yes": -0.2, "No": -2.0}, {"Yes": -0.2, "No": -2.0}),
          rec("No", {"Yes": -1.5, "No": -0.4}, {"No": -0.4, "Yes": -1.5}),
          rec("No", {"Yes": -1.2, "No": -0.5}, {"No": -0.5, "Yes": -1.2}),
          rec("\n", {"Yes": -3.0, "No": -2.0}, {"\n": -0.1, "No": -2.0})]
    ab = [rec("A", {"A": -0.1, "B": -3.0}, {"A": -0.1, "B": -3.0}) for _ in range(4)]
    responses = {("ds", "nl", "m"): write(tmp_path / "nl.jsonl", nl), ("ds", "ab", "m"): write(tmp_path / "ab.jsonl", ab)}
    t = format_table({"ds": ds}, {"nl": ["Yes", "No"], "ab": ["A", "B"]}, YN, responses,
                     {"m": {"kind": "base", "params": 1e8}}, {"n": 200})
    nlr, abr = t[t["format"] == "nl"].iloc[0], t[t["format"] == "ab"].iloc[0]
    assert nlr["acc_choice"] == pytest.approx(3 / 4) and nlr["top_outside"] == pytest.approx(1 / 4)
    assert nlr["class_mass"] == pytest.approx(np.mean([np.exp(-0.2) + np.exp(-2), np.exp(-0.4) + np.exp(-1.5),
                                                       np.exp(-0.5) + np.exp(-1.2), np.exp(-2.0)]))
    assert abr["acc_choice"] == pytest.approx(2 / 4) and abr["top_outside"] == 0  # always (A): the "yes" option
    assert abr["p_yes"] == pytest.approx(1 / (1 + np.exp(-2.9)))  # P("A") among A/B, A standing for " Yes"
    assert nlr["p_yes"] == pytest.approx(np.mean([1 / (1 + np.exp(-d)) for d in (1.8, -1.1, -0.7, -1.0)]))
    assert list(t["n_scored"]) == [4, 4]


def test_cross_table_differences_from_level_0_are_paired(tmp_path):
    ds = write(tmp_path / "final.jsonl", [{"prompt": f" Q{i}?", "classes": YN, "answer_index": 0} for i in range(4)])
    yes = rec(" Yes", {" Yes": -0.1, " No": -2.5})
    no = rec(" No", {" Yes": -2.5, " No": -0.1})
    files = {"base": [yes, yes, no, no], "p0": [yes, yes, yes, no], "p100": [yes, no, no, no]}
    runs = [{"dataset": "final", "policy": "pol", "technique": "base", "seed": None, "poisoning": None},
            {"dataset": "final", "policy": "pol", "technique": "sft", "seed": 62, "poisoning": 0.0},
            {"dataset": "final", "policy": "pol", "technique": "sft", "seed": 62, "poisoning": 100.0}]
    paths = [write(tmp_path / f"{k}.jsonl", v) for k, v in files.items()]
    t = cross_table({"final": ds}, runs, paths, {"pol": {"params": 1e8}}, {"n": 300})
    assert list(t["acc_greedy"]) == pytest.approx([0.5, 0.75, 0.25])
    p100 = t.iloc[2]
    assert p100["acc_greedy_vs_p0"] == pytest.approx(-0.5)  # items 1 and 2 lost, none gained
    assert p100["acc_greedy_vs_p0_lo"] <= -0.25 and p100["acc_greedy_vs_p0_hi"] <= 0
    assert t.iloc[1]["acc_greedy_vs_p0"] == 0 and np.isnan(t.iloc[0]["acc_greedy_vs_p0"])
    assert t.iloc[0]["params"] == 1e8
