"""The persistent response cache: survives new instances (= reruns), counts hits and calls, never stores
credentials."""

from __future__ import annotations

import sqlite3

import pytest

from talltales.lm.cache import ResponseCache, request_key

NS = {"backend": "hf", "model": "tests/tiny", "revision": None, "dtype": "float32"}


class Calls:
    """A real callable that records how often it ran."""

    def __init__(self, value):
        self.value = value
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.value


def test_get_or_call_calls_once_and_then_hits(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    call = Calls([" Yes", " No"])
    req = {"op": "generate", "prompts": ["a"], "seed": 1}
    assert cache.get_or_call(NS, req, call) == [" Yes", " No"]
    assert cache.get_or_call(NS, dict(req), call) == [" Yes", " No"]
    assert call.n == 1
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(cache) == 1
    assert cache.stats() == "cache hits: 1, calls made: 1"


def test_persists_across_instances(tmp_path):
    db = tmp_path / "sub" / "dir" / "c.sqlite"  # parent folders are created
    first = ResponseCache(db)
    stored = {"text": " Yes", "logprobs": {"top_logprobs": [{" Yes": -0.1, " No": -2.3}]}, "n": [1, 2.5, None]}
    first.get_or_call(NS, {"op": "score", "prompt": "p"}, Calls(stored))
    first.close()

    second = ResponseCache(db)
    call = Calls("SHOULD NOT BE RETURNED")
    assert second.get_or_call(NS, {"op": "score", "prompt": "p"}, call) == stored
    assert call.n == 0
    assert (second.hits, second.misses) == (1, 0)
    # a different request or a different model is a miss
    assert second.get_or_call(NS, {"op": "score", "prompt": "q"}, Calls(1)) == 1
    assert second.get_or_call({**NS, "model": "other"}, {"op": "score", "prompt": "p"}, Calls(2)) == 2
    assert (second.hits, second.misses) == (1, 2)
    assert len(second) == 3
    second.close()


def test_two_open_instances_share_entries(tmp_path):
    db = tmp_path / "c.sqlite"
    a, b = ResponseCache(db), ResponseCache(db)
    a.get_or_call(NS, {"x": 1}, Calls("from a"))
    call = Calls("from b")
    assert b.get_or_call(NS, {"x": 1}, call) == "from a"
    assert call.n == 0


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
    cache = ResponseCache(tmp_path / "c.sqlite")
    call = Calls("x")
    with pytest.raises(ValueError, match="credentials"):
        cache.get_or_call(NS, {"op": "generate", secret: "sk-SECRET"}, call)
    with pytest.raises(ValueError, match="credentials"):
        cache.get_or_call({**NS, secret: "sk-SECRET"}, {"op": "generate"}, call)
    assert call.n == 0
    assert len(cache) == 0
    cache.close()
    raw = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT * FROM responses").fetchall()
    assert raw == []


def test_no_path_means_no_caching():
    cache = ResponseCache(None)
    call = Calls("v")
    assert cache.get_or_call(NS, {"x": 1}, call) == "v"
    assert cache.get_or_call(NS, {"x": 1}, call) == "v"
    assert call.n == 2
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(cache) == 0
