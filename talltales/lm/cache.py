"""Persistent request -> response cache shared by every backend.

Keyed on a hash of (backend identity, model, request). Each entry is committed as soon as it is written, so
a killed run loses nothing it had already paid for, and a rerun or a resumed run makes zero repeated calls.
The cache lives outside the Snakemake DAG (its path is a param, its contents are never an input), so
writing to it never triggers a rerun. API keys are never part of a key or a value.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

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

    def get_or_call(self, namespace: dict[str, Any], request: dict[str, Any], call: Callable[[], Any]) -> Any:
        key = request_key(namespace, request)
        cached = self.get(key)
        if cached is not None:
            with self._lock:
                self.hits += 1
            return cached
        response = call()
        with self._lock:
            self.misses += 1
        self.put(key, namespace, response)
        return response

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
