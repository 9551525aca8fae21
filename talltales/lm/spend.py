"""A hard cap on what paid API requests may cost, kept in one ledger file that every job of a workflow shares.

The setting is the top-level config key ``spending: {max_usd, ledger}``. :func:`talltales.config.model_entry`
copies the ledger's path into the registry entry of every model it concerns (:func:`spending_for`), so it reaches
the backend as :attr:`talltales.lm.base.ModelSpec.spending` like every other field of a model's entry; the cap
itself reaches the backends through the environment (:func:`publish_cap`, called by the workflow in every job
from that job's config), so that raising it after a stop reruns no finished job (it is in no job's params).

Only *paid* requests touch the ledger: those the response cache could not answer, to a model with
``price_per_1k``. Before each one the backend reserves its upper-bound cost (:func:`talltales.lm.cost.estimate_cost`:
input tokens as counted there + ``max_tokens`` output tokens); when spent + reserved + that estimate would pass
``spending.max_usd`` the reservation is refused with :class:`SpendingCapError` and the request is never sent.
After the answer the actual cost (from the response's ``usage``, else the estimate) is recorded and the
reservation released. An item answered by several requests (scoring with echo) first reserves them all (a
*hold*) and its requests draw on it, so the cap never stops an item half paid.

The ledger is JSON (version 1)::

    {"version": 1, "spent_usd": TOTAL, "requests": N, "updated": ISO TIME,
     "models": {NAME: {"id", "spent_usd", "requests", "input_tokens", "output_tokens", "estimated_requests"}},
     "reserved": {ID: {"model", "usd", "kind": "request" | "hold", "parent", "pid", "host", "since", "expires"}}}

Every change is made under an exclusive ``fcntl.flock`` of ``LEDGER.lock`` (read, change, write a new file,
fsync, rename), so parallel jobs -- and the threads of one job -- cannot pass the cap together, and the total
survives reruns. A reservation left by a process that died (same host, its pid gone) or that outlived its
time limit counts as spent (the request may have been billed); a hold left so is dropped. No URL, header or
key is ever written to the ledger or logged: only model names, token counts and amounts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from ..io import atomic_write
from .base import ModelSpec
from .cost import has_price

log = logging.getLogger(__name__)

LEDGER_VERSION = 1
#: Config key of the cap (named by every message about it).
CAP_KEY = "spending.max_usd"
#: Environment variable through which the workflow hands the cap to the backends of its jobs (publish_cap).
CAP_ENV = "TALLTALES_SPENDING_MAX_USD"
#: Seconds after which a reservation nobody recorded or released is taken as stale (when its pid can't tell).
DEFAULT_TTL_S = 3600.0
#: Slack of cap comparisons (float sums of many small amounts).
_EPS = 1e-9


class SpendingError(RuntimeError):
    """The spending cap cannot be applied (an unreadable ledger, a paid model without a price)."""


class SpendingCapError(SpendingError):
    """A paid request would take the spending past ``spending.max_usd``; it was not sent."""

    def __init__(self, message: str, *, model: str, estimate: float, spent: float, reserved: float,
                 cap: float, ledger: str):
        super().__init__(message)
        self.model, self.estimate, self.spent, self.reserved = model, estimate, spent, reserved
        self.cap, self.ledger = cap, ledger


def usd(value: float | None) -> str:
    """An amount as messages write it: ``$0.001250``."""
    return "unknown" if value is None else f"${value:,.6f}"


def is_openai_api(base_url: str | None) -> bool:
    """True for OpenAI's own (paid) API: ``api.openai.com``, or no URL (the SDK's default)."""
    return not base_url or (urlparse(base_url).hostname or "").lower() == "api.openai.com"


def spending_for(entry: dict[str, Any], spending: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``spending`` settings a model's registry entry carries to its backend, or None where they have no
    effect: a priced openai model (metered), or an unpriced one of api.openai.com under a cap (refused)."""
    if entry.get("backend") != "openai" or not spending or not spending.get("ledger"):
        return None
    if has_price(entry.get("price_per_1k")) or is_openai_api(entry.get("base_url")):
        return {"ledger": spending["ledger"]}  # the cap comes from publish_cap: editing it reruns nothing
    return None


def ledger_for(spec: ModelSpec) -> Ledger | None:
    """The ledger that meters ``spec``'s requests, or None for a free model; raises :class:`SpendingError` for
    a cap that cannot be enforced (an api.openai.com model without ``price_per_1k``)."""
    settings = spec.spending or {}
    cap = settings.get("max_usd")
    if cap is None:
        cap = published_cap()
    if not has_price(spec.price_per_1k):
        if cap is not None and spec.backend == "openai" and is_openai_api(spec.base_url):
            raise SpendingError(
                f"model {spec.name!r} is served by api.openai.com but has no price: set models.{spec.name}."
                f"price_per_1k ({{input: USD, output: USD}} per 1000 tokens) so that the cap {CAP_KEY} = "
                f"{usd(float(cap))} can be enforced, or set {CAP_KEY}: null to run without a cap"
            )
        return None
    if not settings.get("ledger"):
        if cap is not None:
            raise SpendingError(f"model {spec.name!r}: {CAP_KEY} is set but spending.ledger names no file")
        return None
    return Ledger(settings["ledger"], settings.get("max_usd"))


def publish_cap(spending: dict[str, Any] | None) -> None:
    """Hand the config's ``spending.max_usd`` to every backend this process and its children create, through the
    environment variable :data:`CAP_ENV` (the workflow calls this as it parses the Snakefile, in the main process
    and again in every job, each from the config that job runs with): the cap is in no job's params, so raising it
    after a stop reruns only the jobs that did not finish, and no other process (a dry run, another working
    directory) can change the cap of a running job."""
    cap = (spending or {}).get("max_usd")
    os.environ[CAP_ENV] = "" if cap is None else repr(float(cap))


def published_cap() -> float | None:
    """The cap :func:`publish_cap` set for this process (None: none)."""
    value = os.environ.get(CAP_ENV, "").strip()
    return float(value) if value else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _new_state() -> dict[str, Any]:
    return {"version": LEDGER_VERSION, "spent_usd": 0.0, "requests": 0, "models": {}, "reserved": {},
            "updated": _now()}


def _new_model(model_id: str | None) -> dict[str, Any]:
    return {"id": model_id, "spent_usd": 0.0, "requests": 0, "input_tokens": 0, "output_tokens": 0,
            "estimated_requests": 0}


class Ledger:
    """What paid requests cost, and what requests in flight have reserved, in the JSON file ``path``.

    Args:
        path: the ledger file (created with its folder); ``path.lock`` beside it is the lock file.
        max_usd: the cap (``spending.max_usd``); None: the one the workflow published (:func:`publish_cap`), if
            any, else none (spending is still recorded).
    """

    def __init__(self, path: str | Path, max_usd: float | None = None):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.max_usd = None if max_usd is None else float(max_usd)
        self._host = socket.gethostname()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, max_usd={self.max_usd!r})"

    # ------------------------------------------------------------------ file access

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The ledger's state under the exclusive lock; written back, if changed, when the block ends without an
        exception."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                before = json.dumps(state, sort_keys=True)
                self._expire(state)
                yield state
                if json.dumps(state, sort_keys=True) != before or not self.path.exists():
                    state["updated"] = _now()
                    atomic_write(self.path, lambda fh: self._dump(fh, state))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _dump(fh, state: dict[str, Any]) -> None:
        json.dump(state, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return _new_state()
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SpendingError(
                f"the spending ledger {self.path} cannot be read ({e}); repair or restore it (deleting it forgets "
                f"what was already spent under {CAP_KEY})"
            ) from e
        if not isinstance(state, dict) or state.get("version") != LEDGER_VERSION:
            raise SpendingError(f"the spending ledger {self.path} is not a version-{LEDGER_VERSION} ledger")
        return state

    def _expire(self, state: dict[str, Any]) -> None:
        """Settle reservations whose process is gone (this host) or whose time is up: a request one counts as
        spent at its estimate (it may have been billed), a hold is dropped."""
        now = time.time()
        for rid, r in list(state["reserved"].items()):
            dead = r.get("host") == self._host and not _alive(int(r.get("pid", 0)))
            if not (dead or now > float(r.get("expires", 0))):
                continue
            del state["reserved"][rid]
            if r.get("kind") == "request":
                why = "its process ended" if dead else "it outlived its time limit"
                log.warning("spending ledger %s: a reservation of %s for model %s was never settled (%s); counted "
                            "as spent", self.path, usd(r["usd"]), r["model"], why)
                self._spend(state, r["model"], None, float(r["usd"]), 0, 0, estimated=True)

    @staticmethod
    def _spend(state: dict[str, Any], model: str, model_id: str | None, amount: float, input_tokens: int,
               output_tokens: int, estimated: bool) -> None:
        m = state["models"].setdefault(model, _new_model(model_id))
        m["id"] = m.get("id") or model_id
        m["spent_usd"] += amount
        m["requests"] += 1
        m["input_tokens"] += int(input_tokens)
        m["output_tokens"] += int(output_tokens)
        m["estimated_requests"] += int(estimated)
        state["spent_usd"] += amount
        state["requests"] += 1

    # ------------------------------------------------------------------ what a backend calls

    def cap(self) -> float | None:
        """The cap in force: the one given to this object, else the one the workflow published (None: no cap)."""
        return self.max_usd if self.max_usd is not None else published_cap()

    def reserve(self, model: str, amount: float, *, hold: bool = False, within: str | None = None,
                ttl_s: float = DEFAULT_TTL_S) -> str:
        """Reserve ``amount`` USD for a request of ``model`` (``hold``: for the requests of one item) and return
        the reservation's id; :class:`SpendingCapError` (nothing reserved) when the cap would be passed. With
        ``within`` (a hold's id) the amount is taken from that hold while it has enough left."""
        rid, refused = uuid.uuid4().hex, None
        with self._locked() as state:
            parent = state["reserved"].get(within) if within else None
            if parent is not None and parent["usd"] + _EPS >= amount:
                parent["usd"] = max(0.0, parent["usd"] - amount)
            else:
                parent = None
                spent, reserved = state["spent_usd"], sum(r["usd"] for r in state["reserved"].values())
                cap = self.cap()
                if cap is not None and spent + reserved + amount > cap + _EPS:
                    refused = (spent, reserved, cap)
            if refused is None:
                state["reserved"][rid] = {
                    "model": model, "usd": float(amount), "kind": "hold" if hold else "request",
                    "parent": within if parent is not None else None, "pid": os.getpid(), "host": self._host,
                    "since": _now(), "expires": time.time() + ttl_s,
                }  # fmt: skip
        if refused is not None:
            raise self._refusal(model, amount, *refused)
        return rid

    def _refusal(self, model: str, amount: float, spent: float, reserved: float, cap: float) -> SpendingCapError:
        in_flight = f" and {usd(reserved)} reserved by requests in flight" if reserved > _EPS else ""
        return SpendingCapError(
            f"spending cap reached: a request to model {model!r} may cost up to {usd(amount)} (its upper-bound "
            f"estimate), which would pass the cap {CAP_KEY} = {usd(cap)}: {usd(spent)} is already "
            f"spent{in_flight} (ledger {self.path}). The request was not sent; the answers already received are "
            f"in the response cache. Raise {CAP_KEY} to go on: a rerun sends only the missing requests.",
            model=model, estimate=amount, spent=spent, reserved=reserved, cap=float(cap),
            ledger=str(self.path),
        )  # fmt: skip

    def record(self, reservation: str, model: str, amount: float, *, input_tokens: int = 0,
               output_tokens: int = 0, estimated: bool = False, model_id: str | None = None) -> None:
        """A request was answered (or may have been billed): add ``amount`` to the spending (``estimated``: it is
        the estimate, not the server's ``usage``) and drop its reservation."""
        with self._locked() as state:
            state["reserved"].pop(reservation, None)
            self._spend(state, model, model_id, float(amount), input_tokens, output_tokens, estimated)

    def release(self, reservation: str) -> None:
        """Drop a reservation without spending (the request was refused, or an item's hold is done); a request's
        reservation goes back to the hold it came from, if that is still there."""
        with self._locked() as state:
            r = state["reserved"].pop(reservation, None)
            parent = state["reserved"].get(r.get("parent") or "") if r else None
            if parent is not None:
                parent["usd"] += r["usd"]

    def state(self) -> dict[str, Any]:
        """A copy of the ledger, with ``reserved_usd`` (the sum of the reservations) and ``remaining_usd`` (the
        cap less spent and reserved; None without a cap) added."""
        with self._locked() as state:
            out = json.loads(json.dumps(state))
        cap = self.cap()
        out["cap_usd"] = cap
        out["reserved_usd"] = sum(r["usd"] for r in out["reserved"].values())
        out["remaining_usd"] = None if cap is None else max(0.0, cap - out["spent_usd"] - out["reserved_usd"])
        return out

    def describe(self, state: dict[str, Any] | None = None) -> str:
        """The spending so far, the cap and what is left, in words (for the log); ``state``: one just read."""
        s = state or self.state()
        if s.get("cap_usd") is None:
            return (f"{usd(s['spent_usd'])} spent on {s['requests']} paid requests (no cap: {CAP_KEY} is null; "
                    f"ledger {self.path})")
        return (f"{usd(s['spent_usd'])} spent on {s['requests']} paid requests of the cap {CAP_KEY} = "
                f"{usd(s['cap_usd'])}, {usd(s['remaining_usd'])} left (ledger {self.path})")


__all__ = ["CAP_ENV", "CAP_KEY", "DEFAULT_TTL_S", "LEDGER_VERSION", "Ledger", "SpendingCapError", "SpendingError",
           "is_openai_api", "ledger_for", "publish_cap", "published_cap", "spending_for", "usd"]
