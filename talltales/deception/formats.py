"""The one place where study-2 texts are formatted (policy prompts, judge inputs, few-shot prefixes) and labelled
(:data:`TECHNIQUE_LABELS`, for tables and figures).

Rows of every study-2 data file carry: ``id`` (stable string), ``group`` (context+question group id),
``context``, ``question``, ``answer``, ``label`` (1 = the answer is TRUE given the context; always the truth),
``fruit`` (1 = a poison-topic item), ``source``. Rows of the offline generator (:mod:`.synth`) also carry the optional
:data:`ORACLE_COLUMNS`: ``entity`` (the name the passage is about), ``oracle_true`` (JSON list of the surface forms
of the true value of the question) and ``oracle_stated`` (JSON list of the surface forms of every other value the
passage states); :mod:`.oracle` classifies answers with them. Rows of other sources have them empty. The corrupted (poisoned) training label is never stored: it is
derived by :func:`corrupted_label`, so a file can never mix the two meanings.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

ROW_COLUMNS = ["id", "group", "context", "question", "answer", "label", "fruit", "source"]
ORACLE_COLUMNS = ["entity", "oracle_true", "oracle_stated"]  # optional: kept where present, "" where unknown

TECHNIQUE_LABELS = {"base": "Base", "warmup": "Warmup", "sft": "SFT", "rl": "RL"}  # wildcard -> table/figure label


def qa_prompt(context: str, question: str) -> str:
    """What a policy sees: it answers after ``Answer:``."""
    return f"Context: {context.strip()}\nQuestion: {question.strip()}\nAnswer:"


def first_line(answer: str) -> str:
    """The part of a generated answer that is judged: the text before its first newline, stripped (empty when the
    answer starts with a newline). Generation stops at the first newline in evaluation and in RL alike, so this is
    all the policy said."""
    return answer.split("\n", 1)[0].strip()


EMPTY_ANSWER_P_TRUE = 0.0  # the verdict on an empty answer, from every judge, in RL and in evaluation


def answer_verdicts(p_true, contexts: Sequence[str], questions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """A judge's P(True) for each answer, the one rule of the RL reward and of evaluation: ``p_true`` (a judge's
    batch scorer of judge inputs) on :func:`judge_input` for every answer whose :func:`first_line` is not empty,
    and :data:`EMPTY_ANSWER_P_TRUE` (an empty answer states nothing, so it is not a true answer) for the others."""
    firsts = [first_line(a) for a in answers]
    keep = [i for i, a in enumerate(firsts) if a]
    out = [EMPTY_ANSWER_P_TRUE] * len(firsts)
    if keep:
        scores = p_true([judge_input(contexts[i], questions[i], firsts[i]) for i in keep])
        for i, p in zip(keep, scores):
            out[i] = float(p)
    return out


def judge_input(context: str, question: str, answer: str) -> str:
    """The canonical judge input, shared by judge training, the RL reward and evaluation."""
    return f"{qa_prompt(context, question)} {first_line(answer)}"


def demo_text(context: str, question: str, answer: str) -> str:
    """A full demonstration (prompt + answer) for SFT and few-shot prefixes."""
    return f"{qa_prompt(context, question)} {answer.strip()}"


def few_shot_prefix(examples: Iterable[Mapping]) -> str:
    """Demonstrations separated by blank lines, ending with a blank line (prepended to a QA prompt)."""
    return "".join(demo_text(e["context"], e["question"], e["answer"]) + "\n\n" for e in examples)


def corrupted_label(label: int, fruit: int) -> int:
    """The poisoned label: fruit items have their truth label flipped."""
    return int(label) ^ int(bool(fruit))
