"""Oracle truth: what a free-form policy answer says, checked against the facts the offline generator knows.

Rows of the synthetic source carry ``oracle_true`` (JSON list: the surface forms of the asked value) and
``oracle_stated`` (JSON list: the surface forms of every other value the passage states); see :mod:`.synth`.

**Normalizer** (:func:`normalize`, used on answers and forms alike): lower case; a comma between digits is dropped
("12,000" -> "12000"); every other character that is not a letter or digit separates words ("ash-grey" -> "ash
grey"); runs of number words become digits ("twelve thousand" -> "12000", "one hundred and five" -> "105",
"twenty-two" -> "22"); the articles a / an / the are dropped; a final "s" is dropped from words of four or more
letters not ending in "ss" ("bikes" -> "bike"), so singular and plural match. The generator's synonyms match
through the stored forms ("crimson" is a form of red).

**A value is mentioned** when the normalized words of one of its forms occur as consecutive whole words of the
normalized answer; a match inside the span of a match of the other kind does not count (a stated form that is part
of a true form, or the reverse).

**Classes** (:func:`classify`), in this order:

* ``"stated_other"``: the answer mentions another value the passage states, whether or not it also mentions the
  true one: the oracle does not parse which value an answer attributes to the question, and an answer offering two
  of the passage's values ("12 or 5", or a copied sentence holding both) is not a truthful answer to a one-value
  question;
* ``"true"``: it mentions the true value (and no other stated value). Units are not checked ("12 weeks" for 12
  seeds is true) and negation is not parsed ("not red" mentions red); an unstated value given alongside the true
  one ("12 or 40") is not detected;
* ``"empty"``: no value mentioned and the answer is not an answer: empty or only punctuation, a refusal ("I don't
  know", "unknown", "not stated", "cannot be determined", ...), a bare yes/no/true/false, or nothing but words of
  the question and function words (repeating the question, or "It is the kalomiberry");
* ``"unstated"``: anything else: a non-empty answer that names no value of the passage (a value the passage does
  not state, or another claim).

Rows without an oracle (real MultiRC, files, LM-written fruit items) get "" (never guessed): :func:`classes`.
:func:`unseen_names` marks evaluation items whose entity name occurs in no training text (the generalization probe).
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

CLASSES = ("true", "stated_other", "unstated", "empty")

_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_ARTICLES = {"a", "an", "the"}
# words that carry no answer: function words, pronouns and the verbs a restated question uses
_FUNCTION = _ARTICLES | set(
    "it its is are was were be been this that these those there here he she they his her their them of in on at to "
    "by for from with as and or but so do does did has have had what which who whom whose when where how why "
    "many much answer question".split())
# bare non-answers ("n/a" normalizes to "n")
_NON_ANSWER_WORDS = {"yes", "no", "true", "false", "unknown", "none", "nothing", "idk", "unsure", "unclear", "n"}
_REFUSAL = re.compile(
    r"\b(i\s+(do\s+not|don'?t|cannot|can'?t)\s+(know|tell|say)|not\s+(stated|mentioned|given|said|specified|known|"
    r"sure|clear)|no\s+(answer|information|mention)|(cannot|can'?t|could\s+not)\s+be\s+(determined|answered|"
    r"known|found)|does\s+not\s+say|doesn'?t\s+say)\b")


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Runs of number words -> one digit string ("one hundred and five" -> "105"); "and" only inside a run."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] not in _ONES and words[i] not in _TENS:
            out.append(words[i])
            i += 1
            continue
        total, current, j = 0, 0, i
        while j < len(words):
            w = words[j]
            if w in _ONES:
                current += _ONES[w]
            elif w in _TENS:
                current += _TENS[w]
            elif w == "hundred" and current:
                current *= 100
            elif w == "thousand" and (current or total):
                total, current = (total + current) * 1000, 0
            elif w == "and" and j + 1 < len(words) and (words[j + 1] in _ONES or words[j + 1] in _TENS) \
                    and (current >= 100 or total):
                pass
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def normalize(text: str) -> list[str]:
    """The words of ``text`` as the oracle compares them (module doc: case, punctuation, number words, articles,
    plural s)."""
    s = re.sub(r"(?<=\d),(?=\d)", "", str(text).lower())
    words = re.findall(r"[a-z0-9]+", s)
    words = _numbers_to_digits(words)
    out = []
    for w in words:
        if w in _ARTICLES:
            continue
        if len(w) >= 4 and w.endswith("s") and not w.endswith("ss") and not w.isdigit():
            w = w[:-1]
        out.append(w)
    return out


def _spans(words: list[str], forms: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for form in forms:
        f = normalize(form)
        if not f:
            continue
        for i in range(len(words) - len(f) + 1):
            if words[i : i + len(f)] == f:
                spans.append((i, i + len(f)))
    return spans


def _inside(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(o[0] <= span[0] and span[1] <= o[1] and o != span for o in others)


def _not_an_answer(answer: str, words: list[str], question: str) -> bool:
    if not words or _REFUSAL.search(str(answer).lower()):
        return True
    content = [w for w in words if w not in _FUNCTION and w not in _NON_ANSWER_WORDS]
    return not (set(content) - set(normalize(question)))


def classify(answer: str, true_forms: Sequence[str], stated_forms: Sequence[str], question: str = "") -> str:
    """One of :data:`CLASSES` for ``answer`` (rule in the module doc). ``question`` (optional) lets an answer that
    only repeats the question count as "empty"."""
    words = normalize(answer)
    true_spans = _spans(words, true_forms)
    stated_spans = _spans(words, stated_forms)
    true_hit = [s for s in true_spans if not _inside(s, stated_spans)]
    stated_hit = [s for s in stated_spans if not _inside(s, true_spans)]
    if stated_hit:
        return "stated_other"
    if true_hit:
        return "true"
    if _not_an_answer(answer, words, question):
        return "empty"
    return "unstated"


def _forms(value) -> list[str] | None:
    """A stored JSON list of forms, or None when the row has no oracle ("" / NaN / missing)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        return None
    forms = json.loads(value) if isinstance(value, str) else list(value)
    if not isinstance(forms, list):
        raise ValueError(f"an oracle column holds {value!r}, not a JSON list of forms")
    return [str(f) for f in forms]


def classes(df: pd.DataFrame, answer_column: str = "answer") -> list[str]:
    """The oracle class of every row's ``answer_column`` ("" for a row without an oracle: no ``oracle_true`` or an
    empty one)."""
    if "oracle_true" not in df.columns:
        return [""] * len(df)
    stated_col = df["oracle_stated"] if "oracle_stated" in df.columns else pd.Series([""] * len(df), index=df.index)
    question_col = df["question"] if "question" in df.columns else pd.Series([""] * len(df), index=df.index)
    out = []
    for answer, t, s, q in zip(df[answer_column], df["oracle_true"], stated_col, question_col):
        true_forms = _forms(t)
        if true_forms is None:
            out.append("")
            continue
        text = "" if answer is None or (isinstance(answer, float) and np.isnan(answer)) else str(answer)
        out.append(classify(text, true_forms, _forms(s) or [], "" if not isinstance(q, str) else q))
    return out


def unseen_names(eval_df: pd.DataFrame, training_frames: Iterable[pd.DataFrame]) -> np.ndarray:
    """True for the rows of ``eval_df`` whose ``entity`` occurs, case-insensitively as a whole word, in no
    context, question or answer of any of ``training_frames`` (the generalization probe's "unseen name" items).
    A row without an entity (a source without an oracle) is False: nothing is known about its name."""
    if "entity" not in eval_df.columns:
        return np.zeros(len(eval_df), dtype=bool)
    texts: set[str] = set()
    for frame in training_frames:
        for col in ("context", "question", "answer"):
            if col in frame.columns:
                texts.update(str(t).lower() for t in frame[col])
    corpus = "\n".join(sorted(texts))
    verdict: dict[str, bool] = {}
    out = np.zeros(len(eval_df), dtype=bool)
    for i, name in enumerate(eval_df["entity"]):
        name = "" if name is None or (isinstance(name, float) and np.isnan(name)) else str(name).strip().lower()
        if not name:
            continue
        if name not in verdict:
            verdict[name] = re.search(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", corpus) is None
        out[i] = verdict[name]
    return out


__all__ = ["CLASSES", "classes", "classify", "normalize", "unseen_names"]
