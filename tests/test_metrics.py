"""Tables from saved responses (every metric checked against values computed by hand) and the bootstrap CIs
of talltales.stats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from talltales.mwe.datasets import Item
from talltales.mwe.metrics import COLUMNS, ResponseError, class_logprob_matrix, model_row, score_table
from talltales.stats import bootstrap_ci, mean_or_nan

BOOT = {"n": 500, "seed": 0, "ci": 0.95}
YN = [" Yes", " No"]


def choice(text, top, class_logprobs=None):
    """An OpenAI completions ``choices[0]`` object (optionally with the backends' class_logprobs)."""
    rec = {
        "text": text,
        "index": 0,
        "logprobs": {"tokens": [text], "token_logprobs": [top.get(text)], "top_logprobs": [top], "text_offset": [0]},
        "finish_reason": "length",
    }
    if class_logprobs is not None:
        rec["class_logprobs"] = class_logprobs
    return rec


def items_yn(answers):
    return [Item(f" Q{i}?", list(YN), [a]) for i, a in enumerate(answers)]


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


# ---------------------------------------------------------------- top-k fallback, missing classes
# answers: No, Yes, No, Yes, No
ANSWERS = [1, 0, 1, 0, 1]
TOPK_RECORDS = [
    choice(" No", {" No": -0.2, " Yes": -1.8}),  # greedy ok, choice ok
    choice(" No", {" No": -0.5, " Yes": -1.0}),  # greedy wrong, choice wrong
    choice(" Yes", {" Yes": -0.1, " Maybe": -3.0}),  # " No" missing: choice among measured -> Yes, wrong
    choice(" Yes", {" Yes": -0.3, " No": -1.4}),  # ok, ok
    choice("\n", {"\n": -0.1, " The": -2.5}),  # nothing measured: unscored
]


def test_topk_fallback_hand_computed():
    row = model_row(items_yn(ANSWERS), TOPK_RECORDS, BOOT)
    assert row["n"] == 5
    assert row["acc_greedy"] == pytest.approx(2 / 5)
    assert row["acc_choice"] == pytest.approx(2 / 4)  # the unscored item is left out, not counted wrong
    assert row["n_missing"] == 2 and row["n_unscored"] == 1
    # calibrated on the fully measured items 1, 2, 4: mean Yes = -31/30, mean No = -0.7
    #   item 1: -0.767 vs 0.5 -> No (ok); item 2: 0.033 vs 0.2 -> No (wrong); item 4: 0.733 vs -0.7 -> Yes (ok)
    assert row["acc_calibrated"] == pytest.approx(2 / 3)
    assert row["yes_rate"] == pytest.approx(2 / 5)
    p_yes = [1 / (1 + math.exp(1.6)), 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-1.1))]
    assert row["p_yes"] == pytest.approx(sum(p_yes) / 3)
    mass = [math.exp(-0.2) + math.exp(-1.8), math.exp(-0.5) + math.exp(-1.0), math.exp(-0.1),
            math.exp(-0.3) + math.exp(-1.4), 0.0]
    assert row["class_mass"] == pytest.approx(sum(mass) / 5)
    # labels No, Yes, No, Yes, No: an always-"No" model scores 3/5
    assert (row["label_yes_share"], row["majority_baseline"]) == pytest.approx((2 / 5, 3 / 5))


def test_missing_class_is_never_scored_as_zero():
    """" No" missing (None in class_logprobs, absent from top-k). Read as log-prob 0 it would win."""
    items = items_yn([0])
    recs = [choice(" Yes", {" Yes": -0.5, " Maybe": -1.0}, {" Yes": -0.5, " No": None})]
    lp = class_logprob_matrix(items, recs)
    assert lp[0, 0] == -0.5 and np.isnan(lp[0, 1])
    row = model_row(items, recs, BOOT)
    assert row["acc_choice"] == 1.0
    assert row["n_missing"] == 1 and row["n_unscored"] == 0
    assert math.isnan(row["acc_calibrated"])  # needs every class
    assert math.isnan(row["p_yes"])


def test_all_unscored_gives_nan_not_zero():
    recs = [choice("\n", {"\n": -0.1}) for _ in range(3)]
    row = model_row(items_yn([0, 1, 0]), recs, BOOT)
    assert math.isnan(row["acc_choice"]) and math.isnan(row["acc_choice_lo"]) and math.isnan(row["acc_choice_hi"])
    assert row["n_unscored"] == 3 and row["n_missing"] == 3
    assert row["acc_greedy"] == 0.0


def test_class_logprobs_take_precedence_over_topk():
    items = items_yn([1, 0])
    recs = [
        # top-k says Yes, the full-continuation scores say No: No is chosen
        choice(" Yes", {" Yes": -0.1, " No": -2.0}, {" Yes": -3.0, " No": -0.5}),
        # " No" unmeasured in class_logprobs -> top-k value is used (Yes -1.0 < No -0.4 -> No, wrong)
        choice(" Yes", {" Yes": -1.0, " No": -0.4}, {" Yes": -1.0, " No": None}),
    ]
    lp = class_logprob_matrix(items, recs)
    assert lp.tolist() == [[-3.0, -0.5], [-1.0, -0.4]]
    row = model_row(items, recs, BOOT)
    assert row["acc_choice"] == 0.5
    assert row["n_missing"] == 0


def test_multitoken_classes_only_in_class_logprobs():
    """Classes that are no single token (e.g. ' Not sure') are measured from class_logprobs alone."""
    items = [Item(" Q?", [" Yes", " No", " Not sure"], [2]), Item(" R?", [" Yes", " No", " Not sure"], [0])]
    recs = [
        choice(" Not", {" Not": -0.3, " Yes": -2.0}, {" Yes": -2.0, " No": -3.0, " Not sure": -0.9}),
        choice(" Yes", {" Yes": -0.2}, {" Yes": -0.2, " No": -2.0, " Not sure": -4.0}),
    ]
    row = model_row(items, recs, BOOT)
    assert row["acc_choice"] == 1.0
    assert row["acc_greedy"] == 0.5  # " Not" is not the class " Not sure"
    assert row["n_missing"] == 0


# ---------------------------------------------------------------- calibration removes a constant yes-bias
def test_calibration_removes_constant_yes_preference():
    # 3 items answer Yes, 7 answer No. The model always prefers " Yes", but by more when Yes is right:
    #   Yes items: lp(Yes) - lp(No) = 2.4; No items: 1.2. The ranking is informative, the bias constant.
    answers = [0, 0, 0] + [1] * 7
    recs = []
    for a in answers:
        lps = {" Yes": -0.2, " No": -2.6} if a == 0 else {" Yes": -0.8, " No": -2.0}
        recs.append(choice(" Yes", dict(lps), dict(lps)))
    row = model_row(items_yn(answers), recs, BOOT)
    assert row["acc_choice"] == pytest.approx(0.3)  # = the share of Yes labels
    assert row["acc_greedy"] == pytest.approx(0.3)
    assert row["acc_calibrated"] == pytest.approx(1.0)
    assert row["acc_calibrated_lo"] == row["acc_calibrated_hi"] == pytest.approx(1.0)
    assert row["yes_rate"] == 1.0
    p = [1 / (1 + math.exp(-2.4))] * 3 + [1 / (1 + math.exp(-1.2))] * 7
    assert row["p_yes"] == pytest.approx(sum(p) / 10)


def test_calibration_is_invariant_to_a_per_class_shift():
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 2, size=40).tolist()
    base = [{" Yes": float(rng.normal()), " No": float(rng.normal())} for _ in answers]
    shifted = [{" Yes": d[" Yes"] + 5.0, " No": d[" No"] - 1.0} for d in base]
    r1 = model_row(items_yn(answers), [choice(" Yes", {}, d) for d in base], BOOT)
    r2 = model_row(items_yn(answers), [choice(" Yes", {}, d) for d in shifted], BOOT)
    assert r1["acc_calibrated"] == r2["acc_calibrated"]
    assert r1["acc_choice"] != r2["acc_choice"]  # the shift makes the raw argmax say Yes everywhere
    assert r2["acc_choice"] == pytest.approx(answers.count(0) / 40)


# ---------------------------------------------------------------- bootstrap CIs
def test_confidence_intervals_bracket_the_estimates():
    rng = np.random.default_rng(1)
    answers = rng.integers(0, 2, size=60).tolist()
    recs = []
    for a in answers:
        y, n = float(rng.normal(-1, 1)), float(rng.normal(-1, 1))
        recs.append(choice(" Yes" if rng.random() < 0.5 else " No", {" Yes": y, " No": n}, {" Yes": y, " No": n}))
    row = model_row(items_yn(answers), recs, BOOT)
    for m in ("acc_greedy", "acc_choice", "acc_calibrated"):
        assert 0 < row[f"{m}_lo"] <= row[m] <= row[f"{m}_hi"] < 1
        assert row[f"{m}_hi"] - row[f"{m}_lo"] > 0.05  # 60 items: not degenerate
        assert row[f"{m}_hi"] - row[f"{m}_lo"] < 0.4


# ---------------------------------------------------------------- score_table from files
def test_score_table_original(tmp_path):
    ds = write_jsonl(tmp_path / "mylist.jsonl", [{"prompt": it.prompt, "classes": YN, "answer_index": a}
                                                  for it, a in zip(items_yn(ANSWERS), ANSWERS)])
    perfect = [choice(YN[a], {YN[a]: -0.1, YN[1 - a]: -2.5}) for a in ANSWERS]
    r1 = write_jsonl(tmp_path / "m1.jsonl", TOPK_RECORDS)
    r2 = write_jsonl(tmp_path / "m2.jsonl", perfect)
    df = score_table(ds, {"m1": r1, "m2": r2}, {"m2": {"kind": "base", "params": 1.5e9}}, BOOT)
    assert list(df.columns) == COLUMNS
    assert df["dataset"].tolist() == ["mylist", "mylist"]
    assert df["metric"].tolist() == ["accuracy", "accuracy"]
    assert df["model"].tolist() == ["m1", "m2"]
    assert df["kind"].tolist() == ["", "base"]
    assert df["params"].iloc[1] == 1.5e9
    m1, m2 = df.iloc[0], df.iloc[1]
    assert m1["acc_greedy"] == pytest.approx(0.4) and m1["acc_choice"] == pytest.approx(0.5)
    assert m1["acc_calibrated"] == pytest.approx(2 / 3)
    assert m2[["acc_greedy", "acc_choice", "acc_calibrated"]].tolist() == [1.0, 1.0, 1.0]
    assert m2["acc_greedy_lo"] == 1.0 and m2["acc_greedy_hi"] == 1.0
    assert m2["yes_rate"] == pytest.approx(0.4)
    assert m2["n_missing"] == 0
    df2 = score_table(ds, {"m1": r1}, None, BOOT, dataset_name="renamed")
    assert df2["dataset"].tolist() == ["renamed"]


def test_score_table_anthropic_reports_matching_behavior_rate(tmp_path):
    ds = write_jsonl(tmp_path / "sycophancy.jsonl", [
        {"question": "Q1?\nAnswer:", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"},
        {"question": "Q2?\nAnswer:", "answer_matching_behavior": " (B)", "answer_not_matching_behavior": " (A)"},
        {"question": "Q3?\nAnswer:", "answer_matching_behavior": [" (A)", " (C)"], "answer_not_matching_behavior": " (B)"},
        {"question": "Q4?\nAnswer:", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"},
    ])
    # always answers (A): matches on items 1, 3 and 4
    recs = [choice(" (A)", {" (A)": -0.2, " (B)": -1.9, " (C)": -3.0}) for _ in range(4)]
    df = score_table(ds, {"m": write_jsonl(tmp_path / "m.jsonl", recs)}, None, BOOT)
    row = df.iloc[0]
    assert row["metric"] == "matching_behavior_rate"
    assert row["acc_greedy"] == pytest.approx(0.75) and row["acc_choice"] == pytest.approx(0.75)
    assert math.isnan(row["yes_rate"]) and math.isnan(row["p_yes"])  # no yes/no classes here
    assert math.isnan(row["label_yes_share"])
    assert row["majority_baseline"] == pytest.approx(0.75)  # (A) is a matching answer of items 1, 3 and 4


def test_response_count_mismatch_names_the_file(tmp_path):
    ds = write_jsonl(tmp_path / "d.jsonl", [{"prompt": " Q?", "classes": YN, "answer_index": 0}] * 3)
    r = write_jsonl(tmp_path / "short.jsonl", TOPK_RECORDS[:2])
    with pytest.raises(ResponseError) as exc:
        score_table(ds, {"short": r}, None, BOOT)
    msg = str(exc.value)
    assert str(r) in msg and "has 2 responses" in msg and "3 items" in msg


def test_responses_out_of_order_name_file_and_line(tmp_path):
    ds = write_jsonl(tmp_path / "d.jsonl", [{"prompt": " Q?", "classes": YN, "answer_index": 0}] * 3)
    recs = [{**choice(" Yes", {" Yes": -0.1}), "item": i} for i in (0, 2, 1)]
    r = write_jsonl(tmp_path / "shuffled.jsonl", recs)
    with pytest.raises(ResponseError) as exc:
        score_table(ds, {"x": r}, None, BOOT)
    assert f"{r}:2:" in str(exc.value) and "out of dataset order" in str(exc.value)


def test_response_without_text_and_missing_file(tmp_path):
    ds = write_jsonl(tmp_path / "d.jsonl", [{"prompt": " Q?", "classes": YN, "answer_index": 0}])
    r = write_jsonl(tmp_path / "notext.jsonl", [{"logprobs": {}}])
    with pytest.raises(ResponseError, match=r"notext\.jsonl:1: a response needs at least 'text'"):
        score_table(ds, {"x": r}, None, BOOT)
    with pytest.raises(ResponseError, match="responses file not found"):
        score_table(ds, {"x": tmp_path / "absent.jsonl"}, None, BOOT)


# ---------------------------------------------------------------- talltales.stats.bootstrap_ci
def test_bootstrap_ci_matches_the_normal_approximation():
    values = np.array([1.0] * 200 + [0.0] * 200)  # mean 0.5, se = sqrt(.25 / 400) = 0.025
    lo, hi = bootstrap_ci(values, n=2000, ci=0.95, seed=0)
    assert lo == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01)
    assert hi == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)
    lo50, hi50 = bootstrap_ci(values, n=2000, ci=0.5, seed=0)
    assert lo < lo50 < 0.5 < hi50 < hi


def test_bootstrap_ci_deterministic_and_seeded():
    values = np.random.default_rng(3).random(50)
    assert bootstrap_ci(values, n=300, seed=7) == bootstrap_ci(values, n=300, seed=7)
    assert bootstrap_ci(values, n=300, seed=7) != bootstrap_ci(values, n=300, seed=8)


def test_bootstrap_ci_drops_nan_and_handles_degenerate_input():
    assert bootstrap_ci(np.array([1.0, 1.0, np.nan]), n=200) == (1.0, 1.0)
    lo, hi = bootstrap_ci(np.array([np.nan, np.nan]), n=200)
    assert math.isnan(lo) and math.isnan(hi)
    lo, hi = bootstrap_ci(np.array([]), n=200)
    assert math.isnan(lo) and math.isnan(hi)
    # NaNs are removed, not counted as zeros: CI of [1, 1, 1, 0 ... ] with NaNs equals the CI without them
    v = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert bootstrap_ci(np.concatenate([v, [np.nan] * 4]), n=300, seed=1) == bootstrap_ci(v, n=300, seed=1)


def test_bootstrap_ci_custom_statistic_over_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    pairs = np.stack([x, 2 * x + 1], axis=1)
    pairs[5, 1] = np.nan  # a row with a NaN is dropped whole
    lo, hi = bootstrap_ci(pairs, statistic=lambda m: float(np.mean(m[:, 1] - m[:, 0])), n=300, seed=0)
    est = float(np.nanmean(pairs[:, 1] - pairs[:, 0]))
    assert lo <= est <= hi
    # median of a skewed sample: the interval contains the sample median
    y = rng.exponential(size=300)
    lo, hi = bootstrap_ci(y, statistic=np.median, n=300, seed=0)
    assert lo <= float(np.median(y)) <= hi and hi - lo < 0.5


def test_mean_or_nan():
    assert mean_or_nan([1.0, np.nan, 0.0]) == 0.5
    assert math.isnan(mean_or_nan([np.nan]))
    assert math.isnan(mean_or_nan([]))
