"""Persistent request -> response cache shared by every backend, and the one wrapper that applies it.

:class:`CachingLM` (the lm-evaluation-harness ``CachingLM`` shape) wraps any backend and answers each item of a
``generate``, ``score_choices`` or ``loglikelihood`` call from :class:`ResponseCache` when it can; the items it
cannot are sent to the backend in one call, in their original order. Entries are keyed on a hash of (the
backend's ``fingerprint()``, the method, the item's arguments). A backend reports each item as soon as it has
it (``_emit``, see :class:`talltales.lm.base.Backend`) and each entry is committed when written, so a killed
run loses nothing it had already paid for, and a rerun or a resumed run makes zero repeated calls.
The cache lives outside the Snakemake DAG (its path is a param, its contents are never an input), so
writing to it never triggers a rerun. API keys are never part of a key or a value.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from .base import ChoiceScore, Sampling

_SECRET_KEYS = {"api_key", "authorization", "Authorization", "headers"}


def request_key(namespace: dict[str, Any], request: dict[str, Any]) -> str:
    """Stable hash of a request; refuses anything that looks like a credential."""
    for d in (namespace, request):
        bad = _SECRET_KEYS & set(d)
        if bad:
            raise ValueError(f"refusing to cache a request carrying credentials ({sorted(bad)})")
    blob = json.dumps({"ns": namespace, "req": request}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """SQLite-backed cache; safe to share between threads of one process and between processes."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, namespace TEXT, response TEXT)"
            )
            self._conn.commit()

    def get(self, key: str) -> Any | None:
        if self._conn is None:
            return None
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, namespace: dict[str, Any], response: Any) -> None:
        if self._conn is None:
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                (key, json.dumps(namespace, sort_keys=True, default=str), json.dumps(response)),
            )
            self._conn.commit()

    def __bool__(self) -> bool:
        # a cache object is always "there", even while it holds no entries yet (without this, __len__ makes
        # an empty cache falsy and `cache or ResponseCache(None)` silently drops a fresh cache file)
        return True

    def __len__(self) -> int:
        if self._conn is None:
            return 0
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def stats(self) -> str:
        return f"cache hits: {self.hits}, calls made: {self.misses}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class CachingLM:
    """``lm`` behind ``cache``: every method that costs a model call is answered per item from the cache.

    A generate item is (prompt, sampling, k) where k counts earlier copies of the same prompt in the call, so n
    samples of one prompt stay n entries; its value is the k-th sample for that prompt and sampling. A score item
    is (prompt, choices, top_k); a loglikelihood item is (context, continuation). Other attributes are the
    wrapped backend's. Backends may also keep a small fact about themselves here (:meth:`recall`,
    :meth:`remember`; e.g. whether a server's echoed log-probs can be trusted).
    """

    def __init__(self, lm, cache: ResponseCache | None = None):
        self.lm = lm
        self.cache = cache if cache is not None else ResponseCache(None)
        self.spec = lm.spec
        self.namespace = dict(lm.fingerprint())
        request_key(self.namespace, {})  # refuses a fingerprint that carries credentials
        self._pending: list[str] | None = None
        self._encode: Callable[[Any], Any] = lambda v: v
        self._stored: set[int] = set()
        lm.cache_hook = self
        if hasattr(lm, "attach_cache"):
            lm.attach_cache(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    def __repr__(self) -> str:
        return f"CachingLM({self.lm!r})"

    def fingerprint(self) -> dict[str, Any]:
        return dict(self.namespace)

    # ------------------------------------------------------------------ the LM interface
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        seen: dict[str, int] = {}
        requests = []
        for p in prompts:
            k = seen.get(p, 0)
            seen[p] = k + 1
            requests.append({"prompt": p, "sampling": {**asdict(sampling), "stop": list(sampling.stop)}, "k": k})
        return self._run("generate", requests, lambda idx: self.lm.generate([prompts[i] for i in idx], sampling),
                         lambda text: text, lambda text: text)

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], top_k: int = 5
    ) -> list[ChoiceScore]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        requests = [{"prompt": p, "choices": list(c), "top_k": top_k} for p, c in zip(prompts, choices)]
        return self._run(
            "score_choices", requests,
            lambda idx: self.lm.score_choices([prompts[i] for i in idx], [choices[i] for i in idx], top_k=top_k),
            asdict, lambda d: ChoiceScore(**d),
        )

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float | None]:
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        requests = [{"context": c, "continuation": x} for c, x in zip(contexts, continuations)]
        return self._run(
            "loglikelihood", requests,
            lambda idx: self.lm.loglikelihood([contexts[i] for i in idx], [continuations[i] for i in idx]),
            lambda v: {"value": v}, lambda d: d["value"],
        )

    def _run(self, op: str, requests: list[dict], call, encode, decode) -> list:
        keys = [request_key(self.namespace, {"op": op, **r}) for r in requests]
        out: list[Any] = [None] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is None:
                todo.append(i)
            else:
                out[i] = decode(hit)
        self.cache.hits += len(keys) - len(todo)
        if not todo:
            return out
        self._pending, self._encode, self._stored = [keys[i] for i in todo], encode, set()
        try:
            results = call(todo)
        finally:
            pending, stored, self._pending = self._pending, self._stored, None
        for j, (i, value) in enumerate(zip(todo, results)):
            out[i] = value
            if j not in stored:
                self.cache.put(pending[j], self.namespace, encode(value))
        self.cache.misses += len(todo)
        return out

    # ------------------------------------------------------------------ what a backend calls
    def partial(self, index: int, value: Any) -> None:
        """Item ``index`` of the call the backend is answering is done: store it now."""
        if self._pending is not None:
            self.cache.put(self._pending[index], self.namespace, self._encode(value))
            self._stored.add(index)

    def recall(self, fact: str) -> Any | None:
        return self.cache.get(request_key(self.namespace, {"fact": fact}))

    def remember(self, fact: str, value: Any) -> None:
        self.cache.put(request_key(self.namespace, {"fact": fact}), self.namespace, value)


