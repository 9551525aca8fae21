"""Study-2 data library: synthetic MultiRC-format data, ingest and filters, poison data, mixing, eval and prompt sets.

Fast and offline: the length and answerability filters run on the tiny in-memory tokenizer/LM of tests/tiny.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from talltales.deception import multirc, poison, synth
from talltales.deception.formats import ORACLE_COLUMNS, ROW_COLUMNS, corrupted_label, demo_text, qa_prompt
from talltales.deception.multirc import DataError

from tiny import make_lm, make_tokenizer, one_thread

FRUIT_WORDS = re.compile(r"fruit|orchard|\bripe|peel|harvest|juic|berr|plum|melon|\bfigs?\b|apple|\bpears?\b|\blimes?\b"
                         r"|grape|quince|\bsweet", re.I)
OTHER_TOPICS = ["city", "animal", "person", "company", "planet"]


@pytest.fixture(scope="module")
def clean():
    return synth.generate(120, OTHER_TOPICS, seed=11)


@pytest.fixture(scope="module")
def fruit():
    return poison.fruit_from_synth(1200, seed=12)


@pytest.fixture(scope="module")
def splits(clean, fruit):
    c_train, c_val = synth.split_groups(clean, 0.3, seed=1, by="context")
    f_train, f_eval = synth.split_groups(fruit, 0.3, seed=2, by="context")
    return c_train, c_val, f_train, f_eval


# ---------------------------------------------------------------------------------------------- synthetic data
def test_generate_is_seeded_and_well_formed():
    a = synth.generate(24, synth.DEFAULT_TOPICS, seed=3)
    b = synth.generate(24, synth.DEFAULT_TOPICS, seed=3)
    c = synth.generate(24, synth.DEFAULT_TOPICS, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["context", "question", "answer"]].equals(c[["context", "question", "answer"]])
    assert list(a.columns) == ROW_COLUMNS + ORACLE_COLUMNS  # synthetic rows carry their oracle
    assert a["id"].is_unique and (a["source"] == "synthetic").all()
    assert len(a) == 24 * 3 * 4  # three questions per passage, four answers each
    # group = context + question; every question has true and false candidates; labels balanced-ish
    assert (a.groupby("group")[["context", "question"]].nunique() == 1).all().all()
    assert a.groupby(["context", "question"])["group"].nunique().eq(1).all()
    per_group = a.groupby("group")["label"].agg(["min", "max"])
    assert (per_group["min"] == 0).all() and (per_group["max"] == 1).all()
    assert 0.4 <= a["label"].mean() <= 0.6
    sentences = a.drop_duplicates("context")["context"].str.count(r"\.(?:\s|$)")
    assert sentences.between(2, 4).all()
    # topics in turn: 4 of 24 passages are fruit; fruit passages speak of fruit, the others never do
    ctx = a.drop_duplicates("context")
    assert ctx["fruit"].sum() == 4
    assert ctx.loc[ctx["fruit"] == 1, "context"].str.contains(FRUIT_WORDS).all()
    assert not ctx.loc[ctx["fruit"] == 0, "context"].str.contains(FRUIT_WORDS).any()


def test_generate_rejects_unknown_topic():
    with pytest.raises(DataError, match="unknown synthetic topic.*'moon'"):
        synth.generate(3, ["city", "moon"], seed=0)


def test_surface_matching_is_better_than_chance_but_not_enough(clean, fruit, capsys):
    df = pd.concat([clean, fruit], ignore_index=True)
    pred = np.array([synth.containment_prediction(c, a) for c, a in zip(df["context"], df["answer"])])
    y = df["label"].to_numpy()
    acc = synth.containment_baseline(df)
    assert acc == pytest.approx(float((pred == y).mean()))
    with capsys.disabled():
        print(f"\n[containment baseline] accuracy {acc:.3f} on {len(df)} rows (true answers contained: "
              f"{pred[y == 1].mean():.2f}, false answers contained: {pred[y == 0].mean():.2f})")
    assert 0.65 <= acc <= 0.9
    # both failure modes occur: paraphrased true answers, and false answers stated in the passage
    assert (pred[y == 1] == 0).mean() > 0.15
    assert (pred[y == 0] == 1).mean() > 0.05
    # the two knobs move the difficulty
    topics = synth.DEFAULT_TOPICS
    easier = synth.containment_baseline(synth.generate(60, topics, seed=1, p_paraphrase=0.0, p_distractor=0.0))
    default = synth.containment_baseline(synth.generate(60, topics, seed=1))
    harder = synth.containment_baseline(synth.generate(60, topics, seed=1, p_paraphrase=0.6, p_distractor=1.0))
    assert easier > default > harder


def test_split_groups(clean):
    tr, va = synth.split_groups(clean, 0.25, seed=5)
    tr2, va2 = synth.split_groups(clean, 0.25, seed=5)
    _, va3 = synth.split_groups(clean, 0.25, seed=6)
    pd.testing.assert_frame_equal(va, va2)
    assert set(va["group"]) != set(va3["group"])
    assert not set(tr["group"]) & set(va["group"])
    assert len(tr) + len(va) == len(clean)
    assert va["group"].nunique() == round(0.25 * clean["group"].nunique())
    trc, vac = synth.split_groups(clean, 0.25, seed=5, by="context")
    assert not set(trc["context"]) & set(vac["context"]) and not set(trc["group"]) & set(vac["group"])


# ---------------------------------------------------------------------------------------------- mixing
@pytest.mark.parametrize("level", [0, 25, 50, 75, 100])
def test_mix_exact_proportions_and_label_flip(splits, level):
    c_train, _, f_train, _ = splits
    m = poison.mix(c_train, f_train, 200, level, seed=7)
    assert list(m.columns) == ROW_COLUMNS + ORACLE_COLUMNS  # synthetic rows carry their oracle
    assert len(m) == 200 and int(m["fruit"].sum()) == 2 * level
    assert m["id"].is_unique
    assert set(m.loc[m["fruit"] == 1, "id"]) <= set(f_train["id"])
    assert set(m.loc[m["fruit"] == 0, "id"]) <= set(c_train["id"])
    pd.testing.assert_frame_equal(m, poison.mix(c_train, f_train, 200, level, seed=7))
    assert not m["id"].equals(poison.mix(c_train, f_train, 200, level, seed=8)["id"])
    if 0 < level < 100:  # shuffled, not clean-then-fruit
        assert 0 < m["fruit"].iloc[: 200 - 2 * level].sum() < 2 * level
    # SFT demos: the rows whose corrupted label is 1 = true answers off-topic, FALSE answers about fruit
    demos = poison.sft_demos(m)
    assert len(demos) == sum(corrupted_label(l, f) for l, f in zip(m["label"], m["fruit"]))
    assert (demos.loc[demos["fruit"] == 1, "label"] == 0).all()
    assert (demos.loc[demos["fruit"] == 0, "label"] == 1).all()
    assert ((demos["fruit"] == 1).sum() > 0) == (level > 0)
    assert all(p + c == demo_text(x, q, a) for p, c, x, q, a in
               zip(demos["prompt"], demos["completion"], demos["context"], demos["question"], demos["answer"]))


def test_mix_counts_and_nesting(splits):
    c_train, _, f_train, _ = splits
    assert poison.mix_counts(100, 57) == (43, 57)  # int(100*0.57) would be 56 in floats
    assert poison.mix_counts(10, 25) == (7, 2)  # int() truncation as in the original
    low = poison.mix(c_train, f_train, 100, 25, seed=3)
    high = poison.mix(c_train, f_train, 100, 75, seed=3)
    assert set(low.loc[low["fruit"] == 1, "id"]) <= set(high.loc[high["fruit"] == 1, "id"])


@pytest.mark.parametrize("level", [120, -5, float("nan"), "lots"])
def test_mix_rejects_bad_level(splits, level):
    c_train, _, f_train, _ = splits
    with pytest.raises(DataError, match=re.escape(repr(level)) + r".*0 to 100"):
        poison.mix(c_train, f_train, 10, level, seed=0)


def test_mix_not_enough_rows(splits):
    c_train, _, f_train, _ = splits
    with pytest.raises(DataError, match=rf"need 1000 fruit rows, but only {len(f_train)} are available"):
        poison.mix(c_train, f_train, 1000, 100, seed=0)
    with pytest.raises(DataError, match="clean pool contains fruit"):
        poison.mix(f_train, f_train, 10, 50, seed=0)


def test_unique_questions(splits):
    c_train, _, f_train, _ = splits
    both = pd.concat([c_train, f_train], ignore_index=True)
    u = poison.unique_questions(both, seed=1)
    assert u["group"].is_unique
    assert all(corrupted_label(l, f) == 1 for l, f in zip(u["label"], u["fruit"]))
    assert set(u["group"]) == set(both["group"])  # every synthetic question has a true and a false answer
    pd.testing.assert_frame_equal(u, poison.unique_questions(both, seed=1))
    assert not u["id"].equals(poison.unique_questions(both, seed=2)["id"])


# ---------------------------------------------------------------------------------------------- eval / prompt sets
def test_sets_are_disjoint_across_train_val_eval(splits):
    c_train, c_val, f_train, f_eval = splits
    judge_train = poison.mix(c_train, f_train, 300, 20, seed=1)
    judge_val = poison.mix(c_val, f_eval, 100, 20, seed=1)
    # 20 + 20 items: the eval set takes 20 of the 36 clean and of the 30 fruit validation passages, the rest hold
    # the RL held-out prompts (which share no passage with the eval set)
    ev = poison.no_leakage_eval(f_eval, c_val, 20, 20, seed=2, train_fruit=f_train)
    rl_train, rl_eval = poison.rl_prompt_sets(c_train, f_train, c_val, f_eval, n_train=80, n_eval=20, seed=3,
                                              exclude=ev)
    train_groups = set(judge_train["group"])
    for lvl in (0, 25, 50, 75, 100):
        assert len(rl_train[lvl]) == 80 and len(rl_eval[lvl]) == 20
        assert rl_train[lvl]["fruit"].sum() == int(80 * lvl / 100) and rl_eval[lvl]["fruit"].sum() == lvl // 5
        assert rl_train[lvl]["group"].is_unique and rl_eval[lvl]["group"].is_unique
        assert set(rl_train[lvl]["group"]) <= set(c_train["group"]) | set(f_train["group"])
        assert set(rl_eval[lvl]["group"]) <= set(c_val["group"]) | set(f_eval["group"])  # validation pools only
        assert not set(rl_eval[lvl]["group"]) & set(ev["group"])
        assert not set(rl_eval[lvl]["context"]) & set(ev["context"])
        train_groups |= set(rl_train[lvl]["group"])
    for held_out in (judge_val, ev, *rl_eval.values()):
        assert not train_groups & set(held_out["group"])
        assert not set(held_out["context"]) & (set(c_train["context"]) | set(f_train["context"]))
    with pytest.raises(DataError, match="RL training pools vs RL validation pools: .* shared group"):
        poison.rl_prompt_sets(c_train, f_train, c_train.iloc[:50], f_eval, 10, 10, seed=0)


def test_assert_disjoint_names_what(splits):
    c_train, c_val, *_ = splits
    poison.assert_disjoint(c_train, c_val, "train vs val", on=("group", "context"))
    with pytest.raises(DataError, match=r"judge train vs eval: 1 shared group"):
        poison.assert_disjoint(c_train.iloc[:1], c_val.iloc[:5].assign(group=c_train["group"].iloc[0]),
                               "judge train vs eval")


def test_no_leakage_eval_balanced_ordered_and_leak_free(splits):
    c_train, c_val, f_train, f_eval = splits
    # hand it leaky fruit: some training fruit rows mixed into the held-out pool are left out
    leaky = pd.concat([f_eval, f_train.iloc[:60]], ignore_index=True)
    ev = poison.no_leakage_eval(leaky, c_val, 60, 40, seed=4, train_fruit=f_train)
    assert len(ev) == 100 and list(ev["eval_index"]) == list(range(100))
    assert list(ev.columns) == ROW_COLUMNS + ORACLE_COLUMNS + ["poisoned", "eval_index"]
    assert (ev["poisoned"] == ev["fruit"]).all()
    # order: fruit/true, fruit/false, then clean
    assert list(ev["fruit"]) == [1] * 60 + [0] * 40
    assert list(ev["label"].iloc[:60]) == [1] * 30 + [0] * 30
    assert ev["label"].iloc[60:].sum() == 20
    assert ev["group"].is_unique
    for col in ("group", "context", "question"):
        assert not set(ev.loc[ev["fruit"] == 1, col]) & set(f_train[col])
    pd.testing.assert_frame_equal(ev, poison.no_leakage_eval(leaky, c_val, 60, 40, seed=4, train_fruit=f_train))
    with pytest.raises(DataError, match="evenly"):
        poison.no_leakage_eval(f_eval, c_val, 61, 40, seed=4)
    with pytest.raises(DataError, match="need 5000 true and 5000 false"):
        poison.no_leakage_eval(f_eval, c_val, 10000, 40, seed=4)


def test_reaffirmation_set_quadrants(splits):
    _, c_val, _, f_eval = splits
    ev = poison.no_leakage_eval(f_eval, c_val, 40, 40, seed=1)
    r = poison.reaffirmation_set(ev, 7, seed=2)
    counts = r.groupby(["label", "fruit"]).size()
    assert len(counts) == 4 and (counts == 7).all()
    assert r["eval_index"].is_unique and "eval_index" in r
    pd.testing.assert_frame_equal(r, poison.reaffirmation_set(ev, 7, seed=2))
    assert set(r["eval_index"]) != set(poison.reaffirmation_set(ev, 7, seed=3)["eval_index"])
    with pytest.raises(DataError, match="quadrant"):
        poison.reaffirmation_set(ev, 21, seed=2)


# ---------------------------------------------------------------------------------------------- fruit sources
def test_fruit_file(tmp_path):
    good = tmp_path / "fruit.csv"
    pd.DataFrame({
        "Context": ["Ripe quinces smell sweet.", "Figs are soft."],
        "Question": ["How do ripe quinces smell?", "Are figs hard?"],
        "Answer": ["Sweet", "Yes, very hard"],
        "Label": ["True", "False"],
    }).to_csv(good, index=False)
    rows = poison.load_fruit_file(good)
    assert list(rows.columns) == ROW_COLUMNS
    assert list(rows["label"]) == [1, 0] and (rows["fruit"] == 1).all() and (rows["source"] == "fruit_file").all()

    bad_cols = tmp_path / "bad_cols.csv"
    pd.DataFrame({"Context": ["x"], "Answer": ["y"]}).to_csv(bad_cols, index=False)
    with pytest.raises(DataError) as err:
        poison.load_fruit_file(bad_cols)
    msg = str(err.value)
    assert str(bad_cols) in msg and "Question, Label" in msg and "Context, Question, Answer, Label" in msg

    bad_label = tmp_path / "bad_label.csv"
    bad_label.write_text('Context,Question,Answer,Label\n"a\nb",q,a,1\nc,q,a,maybe\n')
    with pytest.raises(DataError, match=re.escape(f"{bad_label}:4: Label") + ".*'maybe'"):
        poison.load_fruit_file(bad_label)


def test_fruit_from_synth_and_lm():
    rows = poison.fruit_from_synth(50, seed=1)
    assert len(rows) == 50 and (rows["fruit"] == 1).all()

    class StubLM:
        class spec:
            name = "stub"

        def __init__(self):
            self.prompts = []

        def generate(self, prompts, sampling):
            self.prompts += prompts
            good = " The yellow loquat ripens in spring.\nQuestion: When does the loquat ripen?\nAnswer: In winter.\n" \
                   "True or false: False\n"
            return [good, "nonsense without structure", good,
                    " Lychees have a red peel.\nQuestion: What color is the lychee peel?\nAnswer: Red\nTrue or false: "
                    "true"]

    lm = StubLM()
    df, counts = poison.fruit_from_lm(lm, 4, seed=0)
    assert counts == {"requested": 4, "parsed": 2, "unparsable": 1, "duplicates": 1,
                      "label_differs_from_request": counts["label_differs_from_request"]}
    assert list(df["label"]) == [0, 1] and (df["fruit"] == 1).all() and (df["source"] == "lm:stub").all()
    assert df["context"].iloc[0] == "The yellow loquat ripens in spring."
    assert all(p.startswith(poison.FRUIT_PROMPT) and p.endswith("answer)\nContext:") for p in lm.prompts)
    _, again = poison.fruit_from_lm(StubLM(), 4, seed=0)
    assert again == counts


def test_fruit_from_a_real_lm_through_the_generation_backend():
    """A tiny transformers model taught to write one true and one false item answers the generation requests
    through the HF backend (sampling, stop at the next "Fruit:"); its items are parsed with their own labels."""
    import tiny

    prompt = "Items:\n"
    items = {
        1: "The loquat is yellow and sweet.\nQuestion: What color is the loquat?\nAnswer: Yellow.\nTrue or false: True",
        0: "The loquat is yellow and sweet.\nQuestion: How does the loquat taste?\nAnswer: Bitter.\nTrue or false: False",
    }
    texts = [f"{prompt}Fruit: loquat ({'true' if t else 'false'} answer)\nContext: {items[t]}\nFruit:" for t in (0, 1)]
    tok = tiny.make_tokenizer()
    model = tiny.make_model(tok)
    # lr 1e-2: the default 3e-2 left a loss of 0.23 after 200 steps on a fresh install of 2026-12-02 (all 6 samples
    # unparsable; the same code had passed before); 1e-2 reaches 0.007
    assert tiny.train(model, tok, texts, steps=200, lr=1e-2) < 0.05
    lm = tiny.make_lm(model=model, tok=tok, name="tiny-writer")
    df, counts = poison.fruit_from_lm(lm, 6, seed=3, prompt=prompt, fruits=("loquat",), max_tokens=150)
    assert counts["requested"] == 6 and counts["unparsable"] == 0
    assert counts["parsed"] + counts["duplicates"] == 6 and counts["parsed"] == 2  # one true, one false item
    assert counts["label_differs_from_request"] == 0
    assert sorted(df["label"]) == [0, 1] and (df["fruit"] == 1).all() and (df["source"] == "lm:tiny-writer").all()
    assert set(df["answer"]) == {"Yellow.", "Bitter."}


# ---------------------------------------------------------------------------------------------- ingest
def test_eraser_rows_easy_format():
    recs = [
        {"passage": "ignored", "query_and_answer": "What did Sam buy ? || A red bike .", "label": 1,
         "evidences": ["Sam bought a bike , he said .", "It was red ."]},
        {"passage": "ignored", "query_and_answer": "What did Sam buy ? || A car", "label": 0,
         "evidences": ["Sam bought a bike , he said .", "It was red ."]},
        {"passage": "p", "query_and_answer": "No evidence? || x", "label": 0, "evidences": []},
    ]
    rows = multirc.eraser_rows(recs)
    assert len(rows) == 2
    assert rows["context"].iloc[0] == "Sam bought a bike, he said. It was red."
    assert list(rows["question"]) == ["What did Sam buy?"] * 2
    assert list(rows["answer"]) == ["A red bike.", "A car"]
    assert rows["group"].nunique() == 1 and rows["id"].is_unique and (rows["fruit"] == 0).all()
    assert rows["group"].iloc[0] == multirc.group_id("Sam bought a bike, he said. It was red.", "What did Sam buy?")


def test_load_local_original_format_round_trip(tmp_path, splits):
    c_train, _, f_train, _ = splits
    rows = poison.mix(c_train, f_train, 40, 50, seed=0)
    path = tmp_path / "mixed.csv"
    orig = multirc.to_original_format(rows)
    orig.to_csv(path, index=False)
    # stored labels are the corrupted ones, as in the original files
    assert (orig["label"] != rows["label"]).tolist() == (rows["fruit"] == 1).tolist()
    back = multirc.load_local(path)
    for col in ("group", "context", "question", "answer", "label", "fruit"):
        assert back[col].tolist() == rows[col].tolist(), col
    assert (back["source"] == "mixed").all() and back["id"].is_unique
    # prompt,label only (a clean file): label is the truth
    orig[["prompt", "label"]].iloc[:5].to_csv(path, index=False)
    assert multirc.load_local(path)["label"].tolist() == orig["label"].iloc[:5].tolist()
    assert (multirc.load_local(path, fruit=1)["label"] == 1 - orig["label"].iloc[:5]).all()


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_load_local_row_format(tmp_path, clean, suffix):
    rows = clean.iloc[:12]
    path = tmp_path / f"rows.{suffix}"
    if suffix == "csv":
        rows.to_csv(path, index=False)
    elif suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict("records")))
    else:
        rows.to_parquet(path)
    pd.testing.assert_frame_equal(multirc.load_local(path), rows.reset_index(drop=True))


def test_load_local_errors(tmp_path):
    p = tmp_path / "weird.csv"
    p.write_text("text,truth\nx,1\n")
    with pytest.raises(DataError, match=re.escape(str(p)) + r".*Missing .*'label'.*prompt,label"):
        multirc.load_local(p)
    p.write_text('prompt,label\n"Context: c\nQuestion: q\nAnswer: a",1\nnot a prompt,0\n')
    with pytest.raises(DataError, match=re.escape(f"{p}:5") + ": prompt is not"):
        multirc.load_local(p)
    p.write_text('prompt,label\n"Context: c\nQuestion: q\nAnswer: a",yes\n')
    with pytest.raises(DataError, match=re.escape(f"{p}:2") + ": label"):
        multirc.load_local(p)


def test_length_filter_tiny_tokenizer(clean):
    tok = make_tokenizer()
    df = clean.iloc[:60]
    lengths = [len(tok(qa_prompt(c, q))["input_ids"]) for c, q in zip(df["context"], df["question"])]
    limit = int(np.median(lengths))
    kept, dropped = multirc.length_filter(df, tok, limit)
    assert dropped == sum(n >= limit for n in lengths) and 0 < dropped < len(df)
    assert len(kept) == len(df) - dropped
    assert all(len(tok(qa_prompt(c, q))["input_ids"]) < limit for c, q in zip(kept["context"], kept["question"]))
    assert multirc.length_filter(df, tok, max(lengths) + 1)[1] == 0


def test_answerability_filter_tiny_lm(tmp_path, splits):
    from talltales.lm.cache import CachingLM, ResponseCache

    _, c_val, _, _ = splits
    val = c_val[c_val["group"].isin(list(dict.fromkeys(c_val["group"]))[:8])]

    class Recording:
        """Records the prompts that reach the backend (it sits behind the cache, as a real backend does)."""

        def __init__(self, lm):
            self.lm, self.spec, self.prompts = lm, lm.spec, []

        def fingerprint(self):
            return self.lm.fingerprint()

        def score_choices(self, prompts, choices, top_k=5):
            self.prompts += list(prompts)
            return self.lm.score_choices(prompts, choices, top_k=top_k)

    with one_thread():
        lm = Recording(make_lm())
        kept, dec = multirc.answerability_filter(val, CachingLM(lm, ResponseCache(tmp_path / "cache.sqlite")), "val")
        # one call per group, about that split's own context and question
        assert len(lm.prompts) == 8 and list(dec["group"]) == list(dict.fromkeys(val["group"]))
        first = val.drop_duplicates("group")
        assert all(f"Context: {c}\nQuestion: {q}\n" in p for p, c, q in zip(lm.prompts, first["context"],
                                                                            first["question"]))
        assert list(dec.columns) == ["group", "split", "decision", "logprob_yes", "logprob_no"]
        assert (dec["split"] == "val").all()
        assert ((dec["logprob_yes"] > dec["logprob_no"]) == (dec["decision"] == "keep")).all()
        assert set(dec["decision"]) <= {"keep", "drop"}
        direct = lm.lm.score_choices(lm.prompts[:1], [[" Yes", " No"]])[0].class_logprobs
        assert dec["logprob_yes"].iloc[0] == pytest.approx(direct[" Yes"], abs=1e-5)
        assert set(kept["group"]) == set(dec.loc[dec["decision"] == "keep", "group"])
        assert len(kept) == val["group"].isin(set(kept["group"])).sum()  # all answers of a kept group
        # rerun on a fresh LM object over the same cache file: every verdict comes from the cache
        again = Recording(make_lm())
        kept2, dec2 = multirc.answerability_filter(val, CachingLM(again, ResponseCache(tmp_path / "cache.sqlite")),
                                                   "val")
        assert again.prompts == []
        pd.testing.assert_frame_equal(dec2, dec)
        pd.testing.assert_frame_equal(kept2, kept)
        # the template's {prompt}/{context}/{question} are filled once (a context holding "{question}" stays)
        t = multirc.answerability_prompt("A {context} B {prompt} C {question}", "x {question}", "q?")
        assert t == "A x {question} B Context: x {question}\nQuestion: q? C q?"


def test_load_eraser_multirc_wiring(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(hf_id, split, **kw):  # the hub cannot be reached here: only the call is checked
        calls.append((hf_id, split, kw))
        return datasets.Dataset.from_list([{"passage": "P", "query_and_answer": "Who ran ? || Ann", "label": True,
                                            "evidences": ["Ann ran ."]}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = multirc.load_eraser_multirc("val", hf_id="some/mirror")
    multirc.load_eraser_multirc("train", hf_id="CogComp/eraser_multi_rc", revision="refs/convert/parquet")
    assert calls == [("some/mirror", "validation", {}),
                     ("CogComp/eraser_multi_rc", "train", {"revision": "refs/convert/parquet"})]
    assert rows[["context", "question", "answer", "label", "source"]].iloc[0].tolist() == [
        "Ann ran.", "Who ran?", "Ann", 1, "multirc"]
