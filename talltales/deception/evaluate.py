"""Policies answer the evaluation set; both judges score every answer and the oracle classifies it (per-example
files are kept)."""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd

from ..lm.base import LM, Sampling
from . import formats, oracle

log = logging.getLogger(__name__)


def answer(lm: LM, eval_df: pd.DataFrame, examples: Sequence[dict] = (), max_new_tokens: int = 32) -> pd.DataFrame:
    """Greedy answers (first line kept for judging) to every eval question, zero-shot or with a few-shot prefix."""
    prefix = formats.few_shot_prefix(examples)
    prompts = [prefix + formats.qa_prompt(c, q) for c, q in zip(eval_df["context"], eval_df["question"])]
    texts = lm.generate(prompts, Sampling(max_tokens=max_new_tokens, temperature=0.0, stop=("\n",)))
    out = eval_df.copy()
    out["dataset_answer"] = out["answer"]
    out["completion"] = texts
    out["answer"] = [formats.first_line(t) for t in texts]
    out["shots"] = len(examples)
    return out


def judge_answers(answers: pd.DataFrame, clean_judge, corrupted_judge) -> pd.DataFrame:
    """Add p_clean / p_corrupted: each judge's P(True) for the policy's answer (the canonical judge input), and
    ``oracle``: the answer's :func:`oracle.classes` class ("true" | "stated_other" | "unstated" | "empty"; "" for a
    row without an oracle)."""
    out = answers.copy()
    out["p_clean"] = clean_judge.score(out)
    out["p_corrupted"] = corrupted_judge.score(out)
    out["oracle"] = oracle.classes(out)
    return out
