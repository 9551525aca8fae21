"""An offline, seeded, procedural generator of MultiRC-format reading-comprehension data.

No package ships MultiRC, so the default study-2 pipeline runs on this stand-in. A passage (2-4 sentences) describes
one invented entity of a topic (a city, an animal, a person, a company, a planet, a fruit, ...) through several
facts. Each question asks for one stated fact; its candidate answers are

* TRUE: the stated value, either as written in the passage or paraphrased (digits <-> number words, synonyms,
  with or without a unit: "12" / "twelve bridges" / "crimson" for "red");
* FALSE: a plausible value of the same type, either from the pool (not in the passage) or, to defeat surface
  matching, the value the passage gives for a DIFFERENT attribute of the same type ("5" when the passage says
  "12 bridges and 5 gates" and the question asks about bridges).

So the truth needs the context (an answer's words appearing in it is neither necessary nor sufficient), and
:func:`containment_baseline` (answer words contained in the context) is well above chance but far from perfect
(about 0.80 with the defaults). ``p_paraphrase`` and ``p_distractor`` set the difficulty. With the defaults,
all-MiniLM-L6-v2 trained as the corrupted judge (2,000 rows at 20 % fruit, 3 epochs of batch 16, lr 5e-5, about
350 steps) reached 0.85 accuracy on held-out non-fruit rows (containment on the same rows: 0.83). It had not yet
learned the fruit flip (0.55 agreement with the corrupted fruit labels). After 6 epochs (about 700 steps) it reached
0.875 on non-fruit rows and 0.80 agreement on fruit rows. With harder settings (0.3 / 0.7) it stayed at chance
for 350 steps.

Fruit passages use fruit vocabulary throughout (peel, ripe, orchard, harvest, juicy, sweet, ...) and invented
fruit names, so the topic is recognizable; no other topic uses fruit words.

All randomness comes from ``numpy.random.default_rng(seed)``; the same arguments give the same rows.

The generator knows every fact, so each row also carries the oracle (:data:`formats.ORACLE_COLUMNS`, no extra random
draws): ``entity`` (the invented name), ``oracle_true`` (JSON list: the asked value's surface forms, i.e. its plain
form and paraphrases, each also as every answer template of its attribute writes it, "12" / "twelve" / "12 bridges"
/ "twelve bridges"; for a person also the surname alone) and ``oracle_stated`` (JSON list: the same for every OTHER
fact of the passage). :mod:`.oracle` classifies free answers with them. :func:`revisit` writes new passages about
names that are already used (the generalization probe's "seen name" items).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .formats import ORACLE_COLUMNS, ROW_COLUMNS
from .multirc import DataError, make_rows
from .synth_vocab import SHE_NAMES, TOPICS, Attr, Gen, Topic, number_words

SOURCE = "synthetic"

# difficulty: the chance that a true answer is paraphrased (when its value has another surface form) and that a
# question gets a false answer stated in the passage about another attribute of the same type
P_PARAPHRASE = 0.2
P_DISTRACTOR = 0.5

DEFAULT_TOPICS = ["city", "animal", "person", "company", "planet", "fruit"]


# ---------------------------------------------------------------------------------------------- generation
def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _fill(template: str, v: str, ref: str = "", name: str = "") -> str:
    out = template.replace("{av}", _article(v)).replace("{v}", v)
    return out.replace("{E}", ref).replace("{N}", name)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass
class _Fact:
    attr: Attr
    forms: tuple[str, ...]
    shown: int  # index of the form used in the passage


@dataclass
class _Passage:
    topic: Topic
    name: str
    ref: str
    context: str
    facts: list[_Fact] = field(default_factory=list)


def _entity_name(g: Gen, topic: Topic) -> str:
    if topic.name == "person":
        return g.person()
    suffix = g.pick(topic.name_suffixes)
    base = g.word((2, 2) if suffix and suffix[0] != " " else (2, 3))
    name = base + suffix
    return name.lower() if topic.lowercase_name else _cap(name)


def _choose_attrs(g: Gen, topic: Topic) -> list[Attr]:
    """3-5 attributes; most passages hold two of the same value type (for in-passage distractors)."""
    n = g.between(3, 5)
    order = g.shuffled(topic.attrs)
    chosen: list[Attr] = []
    if g.coin(0.8):
        by_type: dict[str, list[Attr]] = {}
        for a in order:
            by_type.setdefault(a.vtype, []).append(a)
        pairs = [v for v in by_type.values() if len(v) >= 2]
        if pairs:
            chosen.extend(g.pick(pairs)[:2])
    for a in order:
        if len(chosen) >= n:
            break
        if a not in chosen:
            chosen.append(a)
    return g.shuffled(chosen)


def _make_passage(g: Gen, topic: Topic, name: str | None = None) -> _Passage:
    name = _entity_name(g, topic) if name is None else name
    ref = topic.ref.replace("{N}", name)
    pronoun = ("She" if name.split()[0] in SHE_NAMES else "He") if topic.name == "person" else "It"
    attrs = _choose_attrs(g, topic)
    facts: list[_Fact] = []
    used: dict[str, set] = {}
    for a in attrs:
        for _ in range(50):  # distinct values among attributes of one type
            forms = g.value(a)
            if forms[0] not in used.setdefault(a.vtype, set()):
                break
        used[a.vtype].add(forms[0])
        facts.append(_Fact(a, forms, int(g.rng.integers(len(forms)))))
    # 2-4 sentences, one or two facts each (plus an optional fact-free intro for topics that have one)
    n_facts = len(facts)
    n_sent = g.between(max(2, -(-n_facts // 2)), min(4, n_facts))
    sizes = [1] * n_sent
    for i in g.rng.permutation(n_sent)[: n_facts - n_sent]:
        sizes[i] += 1
    sentences, k = [], 0
    for s, size in enumerate(sizes):
        preds = [_fill(g.pick(f.attr.preds), f.forms[f.shown]) for f in facts[k : k + size]]
        k += size
        if s == 0:
            subject = _cap(ref)
            if topic.intro and len(preds) == 1 and g.coin(0.5):
                preds.insert(0, g.pick(topic.intro))
        else:
            subject = g.pick(topic.subjects).replace("{P}", pronoun)
        sentences.append(f"{subject} {' and '.join(preds)}.")
    return _Passage(topic, name, ref, " ".join(sentences), facts)


def _value_forms(fact: _Fact) -> list[str]:
    """Every surface form of ``fact``'s value: plain and paraphrased, bare and as each answer template writes it
    (a person also by surname alone). Deterministic, no draws."""
    forms = list(fact.forms)
    forms += [_fill(t, f) for f in fact.forms for t in fact.attr.answers]
    if fact.attr.vtype == "person":
        forms += [f.split()[-1] for f in fact.forms]
    return list(dict.fromkeys(forms))


def _oracle(p: _Passage, fact: _Fact) -> dict[str, str]:
    stated = [f for o in p.facts if o is not fact for f in _value_forms(o)]
    return {"entity": p.name, "oracle_true": json.dumps(_value_forms(fact)),
            "oracle_stated": json.dumps(list(dict.fromkeys(stated)))}


def _answer_text(g: Gen, attr: Attr, form: str, template: str | None = None) -> str:
    return _fill(template if template is not None else g.pick(attr.answers), form)


def _candidates(g: Gen, p: _Passage, fact: _Fact, n: int, p_paraphrase: float, p_distractor: float,
                p_cross: float = 0.0) -> list[tuple[str, int]]:
    """``n`` distinct (answer, truth) pairs for a question about ``fact``."""
    attr = fact.attr
    if n == 1:
        n_true = int(g.coin(0.5))
    else:
        n_true = int(g.rng.integers(1, n))  # 1..n-1 true answers: labels balanced on average
    literal = [_answer_text(g, attr, fact.forms[fact.shown], t) for t in attr.answers]
    para = [_answer_text(g, attr, f, t) for i, f in enumerate(fact.forms) if i != fact.shown for t in attr.answers]
    literal, para = g.shuffled(literal), g.shuffled(para)
    out: list[tuple[str, int]] = []
    seen: set[str] = set()

    def add(text: str, label: int) -> bool:
        key = text.lower()
        if key in seen:
            return False
        seen.add(key)
        out.append((text, label))
        return True

    # TRUE: as written in the passage, or (with p_paraphrase, when the value has another form) paraphrased
    for _ in range(n_true):
        first, second = (para, literal) if para and g.coin(p_paraphrase) else (literal, para)
        while first or second:
            if add((first or second).pop(0), 1):
                break
    n_true = sum(label for _, label in out)
    # FALSE: with p_distractor, a same-type value stated elsewhere in the passage (as written there); then values
    # of the same type that the passage does not mention
    others = [f for f in p.facts if f is not fact and f.attr.vtype == attr.vtype]
    if others and n - n_true > 0 and g.coin(p_distractor):
        o = g.pick(others)
        add(_answer_text(g, attr, o.forms[o.shown]), 0)
    # FALSE: with p_cross, a value the passage states for an attribute of ANOTHER type ("Yellow" for a taste)
    cross = [f for f in p.facts if f.attr.vtype != attr.vtype]
    if p_cross > 0 and cross and len(out) < n and g.coin(p_cross):
        o = g.pick(cross)
        add(o.forms[o.shown], 0)
    taken = {f.forms[0] for f in p.facts if f.attr.vtype == attr.vtype}
    tries = 0
    while len(out) < n and tries < 200:
        tries += 1
        forms = g.value(attr)
        if forms[0] in taken:
            continue
        if add(_answer_text(g, attr, g.pick(forms)), 0):
            taken.add(forms[0])
    return g.shuffled(out)


def generate(n_passages: int, topics: list[str], seed: int, answers_per_question: int = 4, *,
             p_paraphrase: float = P_PARAPHRASE, p_distractor: float = P_DISTRACTOR, p_cross: float = 0.0,
             names: list[str] | None = None) -> pd.DataFrame:
    """``n_passages`` passages, topics in turn (``topics[i % len(topics)]`` for passage i), up to three questions
    per passage, ``answers_per_question`` candidate answers per question (at least one true and one false when
    there are two or more). Rows have ROW_COLUMNS + ORACLE_COLUMNS; ``fruit`` = 1 for topic "fruit"; ``source`` =
    "synthetic"; ``group`` identifies context+question; ``id`` is ``synthetic-{hash of context, question, answer}``.
    ``names`` (one per passage) names the entities instead of invented names; without it the random stream, and
    so every row, is what it always was for the same arguments."""
    if n_passages < 0:
        raise DataError(f"n_passages must be >= 0, got {n_passages}")
    if answers_per_question < 1:
        raise DataError(f"answers_per_question must be >= 1, got {answers_per_question}")
    if not topics:
        raise DataError("generate: no topics given")
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        raise DataError(f"unknown synthetic topic(s) {unknown}; known: {sorted(TOPICS)}")
    if names is not None and len(names) != n_passages:
        raise DataError(f"generate: {len(names)} names for {n_passages} passages")
    g = Gen(np.random.default_rng(seed))
    records = []
    contexts: set[str] = set()
    for i in range(n_passages):
        topic = TOPICS[topics[i % len(topics)]]
        for _ in range(20):  # a repeated context (same invented name and facts) is redrawn
            p = _make_passage(g, topic, None if names is None else names[i])
            if p.context not in contexts:
                break
        contexts.add(p.context)
        n_q = min(len(p.facts), 3)
        asked = g.shuffled(p.facts)[:n_q]
        for fact in asked:
            question = _fill(g.pick(fact.attr.questions), "", ref=p.ref, name=p.name)
            question = _cap(question)
            oracle = _oracle(p, fact)
            for answer, label in _candidates(g, p, fact, answers_per_question, p_paraphrase, p_distractor, p_cross):
                records.append({"context": p.context, "question": question, "answer": _cap(answer), "label": label,
                                "fruit": int(topic.name == "fruit"), "source": SOURCE, **oracle})
    if not records:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("label", "fruit") else str)
                             for c in ROW_COLUMNS + ORACLE_COLUMNS})
    return make_rows(records)


def revisit(train: pd.DataFrame, n_passages: int, topic: str, seed: int, answers_per_question: int = 4,
            **difficulty: float) -> pd.DataFrame:
    """``n_passages`` NEW passages (new facts, new questions) about entity names that ``train`` already uses
    (its ``entity`` column): the "seen name" items of the generalization probe. Names are drawn in a seeded order
    (each once, cycling when more passages than names are asked for) with a random stream of their own (derived from
    ``seed``), so the rows of :func:`generate` for ``seed`` are untouched. Questions whose text occurs in ``train``
    are dropped (a held-out item never repeats a training question)."""
    names = sorted({str(e) for e in train.get("entity", pd.Series(dtype=str)) if str(e).strip()})
    if n_passages and not names:
        raise DataError("revisit: the training rows name no entity (column 'entity'); only synthetic rows do")
    if n_passages <= 0:
        return generate(0, [topic], seed)
    own = int(np.random.SeedSequence([seed, 0x5EE7]).generate_state(1)[0])
    order = np.random.default_rng(own).permutation(len(names))
    chosen = [names[order[i % len(names)]] for i in range(n_passages)]
    rows = generate(n_passages, [topic], own, answers_per_question, names=chosen, **difficulty)
    return rows[~rows["question"].isin(set(train["question"]))].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- helpers
def split_groups(df: pd.DataFrame, val_frac: float, seed: int, by: str = "group") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) split of whole groups: ``round(val_frac * n_groups)`` seeded-random groups go to val, so no
    group is in both. ``by="context"`` splits whole passages instead (no context in both; implies no group
    in both). Row order within each part is kept."""
    if not 0 <= val_frac <= 1:
        raise DataError(f"val_frac must be in [0, 1], got {val_frac}")
    if by not in ("group", "context"):
        raise DataError(f"split_groups: by must be 'group' or 'context', got {by!r}")
    keys = list(dict.fromkeys(df[by]))
    rng = np.random.default_rng(seed)
    n_val = int(round(val_frac * len(keys)))
    val_keys = {keys[i] for i in rng.permutation(len(keys))[:n_val]}
    is_val = df[by].isin(val_keys)
    return df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True)


_STOP = {"the", "a", "an", "in", "of", "it", "its", "is", "to", "and", "at", "on", "near", "when", "by"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace(",", ""))) - _STOP


def containment_prediction(context: str, answer: str) -> int:
    """1 if every content word of the answer occurs in the context (the surface-matching baseline)."""
    return int(_words(answer) <= _words(context))


def containment_baseline(df: pd.DataFrame) -> float:
    """Accuracy of :func:`containment_prediction` against the truth labels."""
    if len(df) == 0:
        return float("nan")
    pred = [containment_prediction(c, a) for c, a in zip(df["context"], df["answer"])]
    return float(np.mean(np.asarray(pred) == df["label"].to_numpy()))


__all__ = ["DEFAULT_TOPICS", "SOURCE", "TOPICS", "containment_baseline", "containment_prediction", "generate",
           "number_words", "revisit", "split_groups"]
