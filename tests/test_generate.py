"""Stage 1 (longlist): question cleaning, checks, de-duplication, and build_longlist on a tiny real model.

The generation tests use a tiny Llama (tests/tiny.py) trained for a fraction of a second to continue four
few-shot prompts with known questions: a valid one, another valid one, a near-duplicate of the first (other
case, spacing and punctuation) and one too short. Greedy decoding then makes every call of a prompt return
its question, so the expected longlist and drop counts are known exactly.
"""

from __future__ import annotations

import pytest

from talltales.lm.base import Sampling
from talltales.lm.cache import ResponseCache
from talltales.mwe.generate import build_longlist, check_question, clean_question, normalize_key

import tiny


# ---------------------------------------------------------------- pure functions
@pytest.mark.parametrize(
    "raw, clean",
    [
        (" Is the sky blue?", "Is the sky blue?"),
        ('  "Is the sky blue?"  ', "Is the sky blue?"),
        ("4. Do diets work?", "Do diets work?"),
        ("12) Do diets work?", "Do diets work?"),
        ("Do   diets\twork ?", "Do diets work ?"),
        ("", ""),
    ],
)
def test_clean_question(raw, clean):
    assert clean_question(raw) == clean


def test_clean_question_keeps_numbers_inside_the_question():
    assert clean_question("Do 9 out of 10 diets fail?") == "Do 9 out of 10 diets fail?"


@pytest.mark.parametrize(
    "q, reason",
    [
        ("", "empty"),
        ("Is the sky blue", "not_a_question"),
        ("Is the sky blue? Is grass green?", "several_questions"),
        ("Is it?", "too_short"),
        ("Is " + "very " * 60 + "long?", "too_long"),
        ("is the sky blue?", "bad_start"),
        ("3 cats or more?", "bad_start"),
        ("Is the sky blue?", None),
    ],
)
def test_check_question(q, reason):
    assert check_question(q, min_chars=12, max_chars=200) == reason


def test_check_question_length_bounds_are_inclusive():
    q = "Is it true?"  # 11 characters
    assert check_question(q, min_chars=11, max_chars=11) is None
    assert check_question(q, min_chars=12, max_chars=200) == "too_short"
    assert check_question(q, min_chars=1, max_chars=10) == "too_long"


def test_normalize_key_identifies_surface_variants():
    a = normalize_key("Do most diets lead to lasting weight loss?")
    assert a == "do most diets lead to lasting weight loss"
    assert normalize_key("do most  DIETS lead to lasting weight-loss ?!") == a
    assert normalize_key("Do most diets lead to lasting weight gain?") != a


# ---------------------------------------------------------------- build_longlist with a tiny model
PROMPTS = {
    "valid_no": "Questions whose answer is no:\n1. Is the sky green?\n2.",
    "valid_yes": "Questions whose answer is yes:\n1. Is the sky blue?\n2.",
    "near_duplicate": "More questions whose answer is no:\n1. Is water dry?\n2.",
    "too_short": "Short questions:\n1. Cats?\n2.",
}
LEARNED = {
    "valid_no": " Do most diets lead to lasting weight loss?",
    "valid_yes": " Does income affect health?",
    "near_duplicate": " Do most  diets lead to lasting weight-loss ?",
    "too_short": " Zebras?",
}
ANSWER_INDEX = {"valid_no": 1, "valid_yes": 0, "near_duplicate": 1, "too_short": 0}
CLASSES = [" Yes", " No"]
GREEDY = {"max_tokens": 24, "temperature": 0.0, "top_p": 1.0, "stop": ["\n"]}
SAMPLED = {"max_tokens": 12, "temperature": 1.0, "top_p": 1.0, "stop": ["\n"]}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def trained():
    tok = tiny.make_tokenizer()
    model = tiny.make_model(tok, seed=0)
    loss = tiny.train(model, tok, [PROMPTS[k] + LEARNED[k] + "\n3." for k in PROMPTS], steps=150)
    assert loss < 0.2, f"the tiny model did not learn its questions (loss {loss})"
    return tok, model


def _prompts(n: int) -> list[dict]:
    return [{"id": k, "answer_index": ANSWER_INDEX[k], "n": n, "text": PROMPTS[k]} for k in PROMPTS]


def test_trained_model_continues_with_its_questions(trained):
    tok, model = trained
    lm = tiny.make_lm(tok=tok, model=model, model_id="tests/trained")
    out = lm.generate(list(PROMPTS.values()), Sampling(max_tokens=24, temperature=0.0, stop=("\n",)))
    assert out == list(LEARNED.values())


def test_build_longlist_checks_and_deduplicates_across_prompts(trained):
    tok, model = trained
    lm = tiny.make_lm(name="gen", tok=tok, model=model, model_id="tests/trained")
    n = 3
    items, stats = build_longlist(lm, _prompts(n), CLASSES, GREEDY, seed=7, min_chars=12, max_chars=200)

    assert [it["prompt"] for it in items] == [" Do most diets lead to lasting weight loss?", " Does income affect health?"]
    first, second = items
    assert first["answer_index"] == 1 and second["answer_index"] == 0
    assert first["prompt_id"] == "valid_no" and second["prompt_id"] == "valid_yes"
    assert first["call"] == 0 and second["call"] == 0
    assert first["classes"] == CLASSES and first["classes"] is not CLASSES
    assert first["generator"] == "gen"
    assert first["raw"] == LEARNED["valid_no"]
    # each prompt k gets its own seed
    assert first["seed"] == 7 and second["seed"] == 7 + 1_000_003

    assert stats["kept"] == 2
    assert stats["kept_per_prompt"] == {"valid_no": 1, "valid_yes": 1, "near_duplicate": 0, "too_short": 0}
    # within-prompt repeats (n-1 twice), the near-duplicate prompt entirely, the short one entirely
    assert stats["dropped"] == {"duplicate": 2 * (n - 1) + n, "too_short": n}
    assert stats["kept"] + sum(stats["dropped"].values()) == n * len(PROMPTS)


def test_build_longlist_sampled_is_deterministic_and_cached(tmp_path):
    """Untrained model, temperature 1: outputs are random text, but the same seed gives the same longlist,
    and a rerun on the same cache file is answered entirely from the cache."""
    tok = tiny.make_tokenizer()
    model = tiny.make_model(tok, seed=3)
    prompts = _prompts(5)
    db = tmp_path / "cache" / "responses.sqlite"

    cache1 = ResponseCache(db)
    lm1 = tiny.make_lm(tok=tok, model=model, cache=cache1, batch_size=4, model_id="tests/random3")
    raw1 = lm1.generate([PROMPTS["valid_no"]] * 5, Sampling(max_tokens=12, temperature=1.0, stop=("\n",), seed=11))
    items1, stats1 = build_longlist(lm1, prompts, CLASSES, SAMPLED, seed=5, min_chars=1, max_chars=500)
    # one cache entry per generated sample: 5 for the generate() call, 5 per prompt after
    assert cache1.misses == 5 + 5 * len(PROMPTS) and cache1.hits == 0
    assert len(cache1) == cache1.misses
    assert stats1["kept"] + sum(stats1["dropped"].values()) == 5 * len(PROMPTS)
    cache1.close()

    # same seed, no cache: the same texts are generated again
    lm_nocache = tiny.make_lm(tok=tok, model=model, batch_size=4, model_id="tests/random3")
    assert lm_nocache.generate([PROMPTS["valid_no"]] * 5, Sampling(max_tokens=12, temperature=1.0, stop=("\n",), seed=11)) == raw1
    # a different seed gives different texts (random 12-token samples over a 400-token vocabulary)
    other = lm_nocache.generate([PROMPTS["valid_no"]] * 5, Sampling(max_tokens=12, temperature=1.0, stop=("\n",), seed=12))
    assert other != raw1
    # within a batch the rows are different samples
    assert len(set(raw1)) > 1

    # a new cache object on the same file: zero new model calls, identical outputs
    cache2 = ResponseCache(db)
    lm2 = tiny.make_lm(tok=tok, model=model, cache=cache2, batch_size=4, model_id="tests/random3")
    items2, stats2 = build_longlist(lm2, prompts, CLASSES, SAMPLED, seed=5, min_chars=1, max_chars=500)
    assert cache2.misses == 0
    assert cache2.hits == 5 * len(PROMPTS)
    assert items2 == items1 and stats2 == stats1
    cache2.close()


def test_kept_items_are_valid_and_unique(tmp_path):
    """On random text with loose bounds: whatever is kept passes check_question and has a distinct key,
    and every drop reason is one check_question (or de-duplication) can give."""
    tok = tiny.make_tokenizer()
    lm = tiny.make_lm(tok=tok, model=tiny.make_model(tok, seed=4), batch_size=8, model_id="tests/random4")
    items, stats = build_longlist(lm, _prompts(8), CLASSES, SAMPLED, seed=0, min_chars=1, max_chars=500)
    keys = [normalize_key(it["prompt"]) for it in items]
    assert len(keys) == len(set(keys))
    for it in items:
        assert it["prompt"].startswith(" ")
        assert check_question(it["prompt"][1:], 1, 500) is None
        assert it["prompt"][1:] == clean_question(it["raw"])
    assert set(stats["dropped"]) <= {"empty", "not_a_question", "several_questions", "too_short", "too_long",
                                      "bad_start", "duplicate"}
    assert stats["kept"] == len(items) == sum(stats["kept_per_prompt"].values())
