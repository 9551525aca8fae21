"""Negated twins (talltales.mwe.negation) and the negation-cancelled accuracy of the tables, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talltales.mwe.datasets import DatasetError, Item, load_dataset
from talltales.mwe.metrics import negation_scores, score_table
from talltales.mwe.negation import build_twins, check_negation, read_twin_file

YN = [" Yes", " No"]


def check(original, negated):
    return check_negation(original, negated, min_chars=12, max_chars=250, min_overlap=0.6)


@pytest.mark.parametrize("original, negated", [
    ("Is Paris in France?", "Is Paris not in France?"),
    ("Do most diets work?", "Don't most diets work?"),
    ("Are rural hospitals not as well equipped as city hospitals?", "Are rural hospitals as well equipped as city hospitals?"),
    ("Can antibiotics cure the common cold?", "Is it true that antibiotics cannot cure the common cold?"),
])
def test_valid_negations(original, negated):
    assert check(original, negated) is None


@pytest.mark.parametrize("original, negated, reason", [
    ("Is Paris in France?", "Is Paris in France?", "unchanged"),
    ("Is Paris in France?", "Is Paris in Europe?", "no_negation"),
    ("Is Paris in France?", "Is Paris not not in France?", "no_negation"),  # two negations: the same question
    ("Does income affect how long people live?", "Is the sky not blue today?", "changed_question"),
    ("Is Paris in France?", "Paris is not in France.", "not_a_question"),
    ("Is Paris in France?", "", "empty"),
])
def test_invalid_negations(original, negated, reason):
    assert check(original, negated) == reason


def test_build_twins_flips_labels_and_counts_drops():
    items = [Item(" Is Paris in France?", list(YN), [0]), Item(" Is the sea salty?", list(YN), [0]),
             Item(" Pick one?", [" A", " B", " C"], [0]), Item(" Do cats bark?", list(YN), [1])]
    written = {0: " Is Paris not in France?\n", 1: "Is the sea salty?", 3: "Do cats not bark?"}
    twins, stats = build_twins(items, written, "lm-x", 12, 250, 0.6)
    assert [(t["source_item"], t["prompt"], t["answer_index"]) for t in twins] == [
        (0, " Is Paris not in France?", 1), (3, " Do cats not bark?", 0)]
    assert stats == {"items": 4, "kept": 2, "dropped": {"unchanged": 1, "not_two_classes": 1}}


def test_twin_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "twins.jsonl"
    f.write_text('{"item": 0, "prompt": " Is it not?"}\n{"item": 5, "prompt": " Is it?"}\n')
    with pytest.raises(DatasetError, match=r"twins.jsonl:2: 'item' must be the 0-based index .*0\.\.2"):
        read_twin_file(f, 3)
    f.write_text('{"item": 0, "prompt": " Is it not?"}\n{"item": 0, "prompt": " Is it?"}\n')
    with pytest.raises(DatasetError, match=r"twins.jsonl:2: a second twin for item 0"):
        read_twin_file(f, 3)
    f.write_text('{"item": 0, "question": " Is it not?"}\n')
    with pytest.raises(DatasetError, match=r"twins.jsonl:1: a twin is"):
        read_twin_file(f, 3)
    f.write_text('{"item": 1, "prompt": " Is it not?"}\n')
    assert read_twin_file(f, 3) == {1: " Is it not?"}


def rec(yes, no):
    return {"text": " Yes" if yes >= no else " No", "class_logprobs": {" Yes": yes, " No": no}}


def test_a_constant_yes_bias_cancels_in_the_pair_score():
    """A model that knows the answer (log-odds +1 toward it) but adds a yes-bias of 3 nats answers yes everywhere;
    the pair score is right on every pair, whatever the bias."""
    items = [Item(" Q0?", list(YN), [0]), Item(" Q1?", list(YN), [1])]
    twins = [Item(" not Q0?", list(YN), [1], {"source_item": 0}), Item(" not Q1?", list(YN), [0], {"source_item": 1})]
    bias = 3.0
    # log-odds of yes = +1 toward the truth + bias
    lo = {(" Q0?"): 1 + bias, " Q1?": -1 + bias, " not Q0?": -1 + bias, " not Q1?": 1 + bias}
    recs = [rec(lo[it.prompt], 0.0) for it in items]
    twin_recs = [rec(lo[it.prompt], 0.0) for it in twins]
    assert all(r["text"] == " Yes" for r in recs + twin_recs)  # greedy: the bias wins everywhere
    np.testing.assert_array_equal(negation_scores(items, recs, twins, twin_recs), [1.0, 1.0])
    # a model with no knowledge, only the bias: a tie on every pair (0.5), never above chance
    flat = [rec(bias, 0.0) for _ in items]
    np.testing.assert_array_equal(negation_scores(items, flat, twins, [rec(bias, 0.0) for _ in twins]), [0.5, 0.5])
    # a twin whose response misses a class: that pair is unmeasured
    missing = [rec(lo[" not Q0?"], 0.0), {"text": " Yes", "class_logprobs": {" Yes": -0.1, " No": None}}]
    assert np.isnan(negation_scores(items, recs, twins, missing)[1])


def test_table_gains_acc_negation_with_pair_cis(tmp_path):
    ds = tmp_path / "ds.jsonl"
    rows = [{"prompt": f" Q{i}?", "classes": YN, "answer_index": i % 2} for i in range(6)]
    ds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    twins_file = tmp_path / "ds_neg.jsonl"
    # twins of items 0..4 (item 5 has none)
    twins_file.write_text("".join(json.dumps({"prompt": f" not Q{i}?", "classes": YN, "answer_index": 1 - i % 2,
                                              "source_item": i}) + "\n" for i in range(5)))
    # log-odds toward the truth: +1 on items 0-3, -1 on item 4, plus a yes-bias of 2; twins: +1 toward the truth
    def lo(truth_yes, toward):
        return (toward if truth_yes else -toward) + 2.0

    recs = [rec(lo(i % 2 == 0, 1 if i < 4 else -1), 0.0) for i in range(6)]
    twin_recs = [rec(lo(i % 2 == 1, 1), 0.0) for i in range(5)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (tmp_path / "m_neg.jsonl").write_text("".join(json.dumps(r) + "\n" for r in twin_recs))
    t = score_table(ds, {"m": tmp_path / "m.jsonl"}, bootstrap={"n": 300},
                    twins={"dataset": twins_file, "responses": {"m": tmp_path / "m_neg.jsonl"}})
    row = t.iloc[0]
    # pairs 0-3: (1 + 1) / 2 > 0, right; pair 4: (-1 + 1) / 2 = 0, a tie -> 0.5
    assert row["n_pairs"] == 5 and row["acc_negation"] == pytest.approx(4.5 / 5)
    assert row["acc_negation_lo"] <= row["acc_negation"] <= row["acc_negation_hi"] <= 1
    assert row["acc_greedy"] == pytest.approx(3 / 6)  # the yes-bias: every greedy answer is yes
    # without twins the columns are empty
    assert np.isnan(score_table(ds, {"m": tmp_path / "m.jsonl"}).iloc[0]["acc_negation"])
    assert load_dataset(twins_file)[1][0].meta["source_item"] == 0
    # the check kept no twin (the default run's 135M writer on final_strict): no pair, nothing measured
    (tmp_path / "none_neg.jsonl").write_text("")
    (tmp_path / "m_none.jsonl").write_text("")
    row = score_table(ds, {"m": tmp_path / "m.jsonl"}, bootstrap={"n": 300},
                      twins={"dataset": tmp_path / "none_neg.jsonl", "responses": {"m": tmp_path / "m_none.jsonl"}}).iloc[0]
    assert row["n_pairs"] == 0 and np.isnan([row["acc_negation"], row["acc_negation_lo"], row["acc_negation_hi"]]).all()
