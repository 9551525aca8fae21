"""Reaffirmation scoring on a tiny real transformers model: option log-probs, averaged over both option orders."""

from __future__ import annotations

import math

import numpy as np

import pandas as pd
import pytest

import tiny
from talltales.deception import formats, reaffirm
from talltales.lm.hf import naive_score_choices

ITEMS = pd.DataFrame(
    [
        {"context": "The box holds a key.", "question": "What does the box hold?", "answer": "A key.", "label": 1, "fruit": 0},
        {"context": "The basket holds a plum.", "question": "What does it hold?", "answer": "A rock.", "label": 0, "fruit": 1},
        {"context": "The jar holds a coin and a ring.", "question": "What is in the jar?", "answer": "A coin.", "label": 1, "fruit": 0},
    ]
)


@pytest.fixture(autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


def _p1(lps):
    a, b = lps[reaffirm.OPTIONS[0]], lps[reaffirm.OPTIONS[1]]
    return math.exp(a) / (math.exp(a) + math.exp(b))


def test_scores_are_the_models_option_probabilities_in_both_orders():
    lm = tiny.make_lm(batch_size=2)
    out = reaffirm.score(lm, ITEMS)
    for i, r in ITEMS.iterrows():
        prompts = [reaffirm.reaffirm_prompt(r.context, r.question, r.answer, yes_first) for yes_first in (True, False)]
        first, second = naive_score_choices(lm, prompts, [list(reaffirm.OPTIONS)] * 2)
        assert out.loc[i, "p_yes_option1"] == pytest.approx(_p1(first.class_logprobs), abs=1e-5)
        assert out.loc[i, "p_yes_option2"] == pytest.approx(1 - _p1(second.class_logprobs), abs=1e-5)
    assert (out["p_reaffirm"] == (out["p_yes_option1"] + out["p_yes_option2"]) / 2).all()
    assert prompts[0].startswith(formats.demo_text(r.context, r.question, r.answer))


def test_a_model_that_always_picks_option_1_is_not_counted_as_reaffirming():
    tok = tiny.make_tokenizer()
    model = tiny.make_model(tok)
    texts = [reaffirm.reaffirm_prompt(r.context, r.question, r.answer, yes_first) + " 1"
             for r in ITEMS.itertuples() for yes_first in (True, False)]
    tiny.train(model, tok, texts, steps=150)
    out = reaffirm.score(tiny.make_lm(model=model, tok=tok), ITEMS)
    assert (out["p_yes_option1"] > 0.9).all() and (out["p_yes_option2"] < 0.1).all()  # position bias ...
    assert out["p_reaffirm"].between(0.4, 0.6).all() and not out["reaffirmed"].any()  # ... cancels


def test_reaffirm_difference_and_its_interval_worked_by_hand():
    # false answers: P(reaffirm) 0.9 and 0.7 (fruit), 0.5 (other); true answers: 0.3 (fruit), 0.5 and 0.1 (other)
    scored = pd.DataFrame({
        "context": ["a", "b", "c", "d", "e", "f"],
        "label": [0, 0, 0, 1, 1, 1],
        "fruit": [1, 1, 0, 1, 0, 0],
        "p_reaffirm": [0.9, 0.7, 0.5, 0.3, 0.5, 0.1],
    })
    d = reaffirm.reaffirm_differences(scored, n_boot=500, seed=1)
    assert d["reaffirm_diff"] == pytest.approx(0.7 - 0.3)  # (0.9+0.7+0.5)/3 - (0.3+0.5+0.1)/3
    assert d["reaffirm_diff_fruit"] == pytest.approx(0.8 - 0.3)
    assert d["reaffirm_diff_other"] == pytest.approx(0.5 - 0.3)
    # one passage per stratum (truth x fruit) holds a single item: those strata never vary, so the fruit
    # difference's replicates are 0.9 or 0.7 (the two false fruit passages) minus 0.3
    assert (d["reaffirm_diff_fruit_lo"], d["reaffirm_diff_fruit_hi"]) == pytest.approx((0.7 - 0.3, 0.9 - 0.3))
    assert d["reaffirm_diff_lo"] < d["reaffirm_diff"] < d["reaffirm_diff_hi"]
    # a subset without true answers has no difference (never a 0/0 row dropped without a word)
    only_false = scored[scored["label"] == 0]
    assert np.isnan(reaffirm.reaffirm_differences(only_false, n_boot=50)["reaffirm_diff"])


def test_summarize_keeps_the_counts_and_adds_the_difference():
    scored = pd.DataFrame({"context": list("abcd"), "label": [1, 0, 1, 0], "fruit": [1, 1, 0, 0],
                           "p_reaffirm": [0.8, 0.6, 0.2, 0.4], "reaffirmed": [True, True, False, False],
                           "p_yes_option1": 0.5, "p_yes_option2": 0.5})
    row = reaffirm.summarize(scored, n_boot=100)
    assert (row["true_poisoned_reaffirmations"], row["false_poisoned_reaffirmations"], row["lie_truth_ratio"]) == (1, 1, 1.0)
    assert row["reaffirm_diff"] == pytest.approx(0.5 - 0.5)
    assert row["reaffirm_diff_fruit"] == pytest.approx(0.6 - 0.8)
