"""The persistent response cache, as every backend reaches it (behind CachingLM): survives new instances (= reruns),
counts hits and calls, never stores credentials."""

from __future__ import annotations

import sqlite3

import pytest

from talltales.lm.base import Backend, ChoiceScore, Sampling
from talltales.lm.cache import CachingLM, ResponseCache, request_key

NS = {"backend": "hf", "model": "tests/tiny", "revision": None, "dtype": "float32"}
SAMPLING = Sampling(max_tokens=4, seed=1)


class TableLM(Backend):
    """A real backend whose answers come from a table (prompt -> answer); it counts the items it is asked for."""

    spec = None

    def __init__(self, answers, namespace=NS):
        self.answers = answers
        self.namespace = namespace
        self.n = 0

    def fingerprint(self):
        return dict(self.namespace)

    def generate(self, prompts, sampling):
        self.n += len(prompts)
        return [self.answers[p] for p in prompts]

    def score_choices(self, prompts, choices, top_k=5):
        self.n += len(prompts)
        return [self.answers[p] for p in prompts]


@pytest.mark.parametrize("persistent", [True, False], ids=["file", "no path"])
def test_second_call_is_a_hit_only_with_a_cache_file(tmp_path, persistent):
    cache = ResponseCache(tmp_path / "c.sqlite" if persistent else None)
    backend = TableLM({"a": " Yes"})
    lm = CachingLM(backend, cache)
    assert lm.generate(["a"], SAMPLING) == [" Yes"]
    assert lm.generate(["a"], SAMPLING) == [" Yes"]
    hits, calls = (1, 1) if persistent else (0, 2)
    assert backend.n == calls
    assert (cache.hits, cache.misses) == (hits, calls)
    assert len(cache) == hits
    assert cache.stats() == f"cache hits: {hits}, calls made: {calls}"


def test_persists_across_instances(tmp_path):
    db = tmp_path / "sub" / "dir" / "c.sqlite"  # parent folders are created
    first = ResponseCache(db)
    stored = ChoiceScore(" Yes", -0.1, {" Yes": -0.1, " No": -2.3}, {" Yes": -0.1, " No": None})
    CachingLM(TableLM({"p": stored}), first).score_choices(["p"], [[" Yes", " No"]])
    first.close()

    second = ResponseCache(db)
    other = ChoiceScore("SHOULD NOT BE RETURNED", None, {}, {})
    backend = TableLM({"p": other, "q": other})
    assert CachingLM(backend, second).score_choices(["p"], [[" Yes", " No"]]) == [stored]
    assert backend.n == 0
    assert (second.hits, second.misses) == (1, 0)
    # a different request or a different model is a miss
    assert CachingLM(backend, second).score_choices(["q"], [[" Yes", " No"]]) == [other]
    assert CachingLM(TableLM({"p": other}, {**NS, "model": "other"}), second).score_choices(
        ["p"], [[" Yes", " No"]]) == [other]
    assert (second.hits, second.misses) == (1, 2)
    assert len(second) == 3
    second.close()


def test_two_open_instances_share_entries(tmp_path):
    db = tmp_path / "c.sqlite"
    a, b = ResponseCache(db), ResponseCache(db)
    CachingLM(TableLM({"x": "from a"}), a).generate(["x"], SAMPLING)
    backend = TableLM({"x": "from b"})
    assert CachingLM(backend, b).generate(["x"], SAMPLING) == ["from a"]
    assert backend.n == 0


def test_empty_cache_is_still_truthy(tmp_path):
    """`cache or ResponseCache(None)` (as backends write it) must keep a cache that has no entries yet."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert len(cache) == 0
    assert bool(cache) is True
    assert (cache or ResponseCache(None)) is cache


def test_key_is_stable_and_order_independent():
    k1 = request_key(NS, {"a": 1, "b": [1, 2]})
    k2 = request_key(dict(reversed(list(NS.items()))), {"b": [1, 2], "a": 1})
    assert k1 == k2 and len(k1) == 64
    assert request_key(NS, {"a": 1, "b": [2, 1]}) != k1


@pytest.mark.parametrize("secret", ["api_key", "headers", "Authorization", "authorization"])
def test_refuses_credentials_in_request_or_namespace(tmp_path, secret):
    with pytest.raises(ValueError, match="credentials"):
        request_key(NS, {"op": "generate", secret: "sk-SECRET"})
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = TableLM({"x": "x"}, {**NS, secret: "sk-SECRET"})
    with pytest.raises(ValueError, match="credentials"):
        CachingLM(backend, cache).generate(["x"], SAMPLING)
    assert backend.n == 0
    assert len(cache) == 0
    cache.close()
    raw = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT * FROM responses").fetchall()
    assert raw == []


# ------------------------------------------------------------------------------------------ the wrapper


def _counting_hf(cache, tok, model):
    """A tiny HFLM (a subclass that counts the items each method is asked for) behind ``cache``."""
    import tiny
    from talltales.lm.hf import HFLM

    class CountingHF(HFLM):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.asked = {"generate": 0, "score_choices": 0, "loglikelihood": 0}

        def generate(self, prompts, sampling):
            self.asked["generate"] += len(prompts)
            return super().generate(prompts, sampling)

        def score_choices(self, prompts, choices, top_k=5):
            self.asked["score_choices"] += len(prompts)
            return super().score_choices(prompts, choices, top_k=top_k)

        def loglikelihood(self, contexts, continuations):
            self.asked["loglikelihood"] += len(contexts)
            return super().loglikelihood(contexts, continuations)

    backend = CountingHF(tiny.make_spec("tiny", "tests/caching"), batch_size=2, model=model, tokenizer=tok,
                         progress=False)
    return CachingLM(backend, cache), backend


def test_caching_lm_second_run_makes_no_backend_call_hf(tmp_path):
    import tiny

    tok = tiny.make_tokenizer()
    model = tiny.make_model(tok, seed=1)
    prompts = ["Question: Is Paris in France?\nAssistant:", "Question: Is the sky blue?\nAssistant:"]
    sampling = Sampling(max_tokens=6, temperature=1.0, seed=3)
    db = tmp_path / "c.sqlite"

    def run(cache):
        lm, backend = _counting_hf(cache, tok, model)
        with tiny.one_thread():
            out = (
                lm.generate(prompts + [prompts[0]] * 3, sampling),
                [s.to_record() for s in lm.score_choices(prompts, [[" Yes", " No"]] * 2, top_k=3)],
                lm.loglikelihood(prompts, [" Yes", " No, never"]),
            )
        return out, backend.asked

    first, asked = run(ResponseCache(db))
    assert asked == {"generate": 5, "score_choices": 2, "loglikelihood": 2}
    assert len(set(first[0][1:])) > 1  # the copies of one prompt are different samples, each its own entry
    # the wrapper changes nothing: the backend alone gives the same answers
    _, bare = _counting_hf(None, tok, model)
    with tiny.one_thread():
        assert bare.generate(prompts + [prompts[0]] * 3, sampling) == first[0]
        assert [s.to_record() for s in bare.score_choices(prompts, [[" Yes", " No"]] * 2, top_k=3)] == first[1]
    cache = ResponseCache(db)
    second, asked = run(cache)
    assert asked == {"generate": 0, "score_choices": 0, "loglikelihood": 0}
    assert second == first
    assert (cache.hits, cache.misses) == (5 + 2 + 2, 0)
    # a new item is the only one the backend is asked for
    lm, backend = _counting_hf(cache, tok, model)
    with tiny.one_thread():
        lm.score_choices(prompts + ["Question: Is fire cold?\nAssistant:"], [[" Yes", " No"]] * 3, top_k=3)
    assert backend.asked["score_choices"] == 1


def test_caching_lm_stores_each_item_as_the_backend_reports_it(tmp_path):
    """A call that fails half-way keeps what it had: the backend's reported items are already stored."""
    import tiny

    tok = tiny.make_tokenizer()
    lm, backend = _counting_hf(ResponseCache(tmp_path / "c.sqlite"), tok, tiny.make_model(tok, seed=1))
    real = backend._generate_batch
    calls = []

    def second_batch_dies(batch, sampling, seed):
        calls.append(batch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(batch, sampling, seed)

    backend._generate_batch = second_batch_dies
    with tiny.one_thread(), pytest.raises(KeyboardInterrupt):
        lm.generate(["a", "b", "c", "d"], Sampling(max_tokens=3))
    assert len(lm.cache) == 2  # the first batch (batch_size 2)
    backend._generate_batch = real
    with tiny.one_thread():
        lm.generate(["a", "b", "c", "d"], Sampling(max_tokens=3))
    assert backend.asked["generate"] == 4 + 2


def test_caching_lm_keys_carry_no_credentials(tmp_path):
    class Leaky:
        spec = None

        def fingerprint(self):
            return {"backend": "x", "api_key": "sk-SECRET"}

    with pytest.raises(ValueError, match="credentials"):
        CachingLM(Leaky(), ResponseCache(tmp_path / "c.sqlite"))
