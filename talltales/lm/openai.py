"""OpenAI-compatible HTTP backend (OpenAI itself, vLLM, llama.cpp / llama-cpp-python servers, ...).

Behind :class:`~talltales.lm.cache.CachingLM` (as :func:`talltales.lm.load_lm` builds it) every item is cached
under :meth:`OpenAILM.fingerprint` (``backend``, ``base_url``, ``model``, ``endpoint``, ``extra_body``, the echo
mode; never the key), so a rerun makes zero repeated calls; each item is stored as soon as it is answered.

Two endpoints, chosen by ``spec.endpoint``:

``completions`` (legacy completions: davinci-002, gpt-3.5-turbo-instruct, vLLM, llama.cpp servers)
    * ``generate``: one request per prompt (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``).
    * ``score_choices``: one ``max_tokens=1, temperature=0, logprobs=top_k`` request per prompt gives the
      greedy token, its log-prob and the top-k next tokens. The log-prob of each choice string as a full
      continuation comes from an *echo* request (see :class:`OpenAILM`) where the server supports it, else
      from the top-k tokens when the choice is one of them, else it is recorded as missing (None).
    * ``loglikelihood``: echo requests; :class:`NotImplementedError` where the server cannot echo.

``chat`` (chat completions)
    * ``generate``: the prompt is sent as one user message.
    * ``score_choices``: ``logprobs=True, top_logprobs=top_k, max_tokens=1``; a choice's log-prob is read
      from the top-k tokens (exact match, else match after stripping whitespace, because the first token
      of a chat reply carries no leading space); missing -> None. The greedy ``text`` is likewise the choice
      the first token stands for ("Yes" -> " Yes"), so it compares equal to a class; else the token itself.
    * ``loglikelihood``: :class:`NotImplementedError` (chat APIs return no prompt log-probs).

Every request goes through the retry loop of :mod:`talltales.lm.transport` (which also finds the API key and
tells a local server from a paid one). Requests run on a thread pool of ``spec.max_concurrency`` workers;
results come back in input order.

Spending cap (:mod:`talltales.lm.spend`): for a model with ``price_per_1k`` and ``spec.spending`` (the top-level
``spending`` config), each attempt of each request reserves its upper-bound cost in the shared ledger first
(refused with :class:`~talltales.lm.spend.SpendingCapError`, nothing sent, when it would pass
``spending.max_usd``) and records its cost from the response's ``usage`` after; a scoring item of several
(echo) requests reserves them all before the first. A batch logs what is left before and what was spent after.

Server quirks handled here:

* llama.cpp-based servers return *empty* log-probs when the end-of-sequence token is the most likely next
  token (the completion stops before producing a token). Such a prompt is scored as text ``""``,
  ``token_logprob`` None, ``top_logprobs`` ``{}``, class log-probs None, with a warning; set
  ``extra_body: {logit_bias: {"<EOS id>": -100}}`` for that model in the config to avoid it.
* llama-cpp-python (0.3.x) reports echoed prompt log-probs shifted by one position (token *i* scored
  with the distribution that predicts token *i+1*) and treats ``max_tokens=0`` as "no limit"; the echo
  self-check below detects the first, and echo requests always use ``max_tokens=1`` for the second.
* llama-cpp-python computes the reported log-probs *before* ``logit_bias`` is applied, so with a bias the
  sampled token need not be the argmax of ``top_logprobs``; special tokens are reported as ``""``.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .base import Backend, ChoiceScore, ModelSpec, Sampling, logsumexp, truncate_at_stop
from .cost import estimate_cost, price_of
from .spend import ledger_for, usd
from .transport import OpenAIBackendError, is_local_url, resolve_api_key, with_retries

log = logging.getLogger(__name__)

#: Absolute tolerance (nats) of the echo self-check.
ECHO_CHECK_TOLERANCE = 0.1
_STRADDLE = "a token straddles the prompt/continuation boundary"
_NO_TOKEN = "no echoed token inside the continuation"
#: Transport errors (httpx's names) of a connection that was never made: the request never left (not billed).
_NOT_CONNECTED = ("ConnectError", "ConnectTimeout")


# --------------------------------------------------------------------------------------------- backend


class OpenAILM(Backend):
    """LM backend for any OpenAI-compatible server (see the module docstring for what each call sends).

    Args:
        spec: the model registry entry (``base_url``, ``api_key_env``, ``endpoint``, ``extra_body``,
            ``max_concurrency``, ``max_retries``, ``timeout``, ``price_per_1k``, ``tokenizer``, ``spending``).
        echo: how ``score_choices``/``loglikelihood`` get the log-prob of a whole continuation on the
            completions endpoint, by an ``echo=True, max_tokens=1, logprobs=1`` request on
            ``prompt + continuation`` whose prompt tokens starting at ``len(prompt)`` are summed.

            * ``None`` (default): self-check once, then remember. The check echoes ``prompt + greedy
              token`` and compares the echoed log-prob of that token with the one the plain scoring
              request returned. A server that rejects echo (HTTP 4xx), ignores it, returns no prompt
              log-probs, or returns different (e.g. misaligned) ones is marked unsupported: class
              log-probs then come from the top-k tokens (choice string equal to a top-k token), else
              None, and ``loglikelihood`` raises :class:`NotImplementedError`. Behind a cache the verdict
              is remembered there, so a rerun repeats no request. ``echo_status`` says what was decided.
            * ``True``: always echo, no check (errors propagate).
            * ``False``: never echo.
        retry_base_delay, retry_max_delay: backoff of the retry loop in seconds (delay before retry n is
            ``min(max, base * 2**n)`` times a random factor in [0.5, 1.5], at least any Retry-After).

    The API key is read from the environment variable named by ``spec.api_key_env`` and handed only to
    the SDK client; it is never logged, cached, written to the spending ledger or returned.

    Raises :class:`~talltales.lm.spend.SpendingError` when ``spec.spending`` sets a cap that cannot be enforced
    (an api.openai.com model without ``price_per_1k``).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        echo: bool | None = None,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 60.0,
    ):
        import openai  # the SDK (absolute import: this module is talltales.lm.openai)

        if spec.endpoint not in ("completions", "chat"):
            raise ValueError(
                f"model {spec.name!r}: endpoint must be 'completions' or 'chat', not {spec.endpoint!r}"
            )
        self.spec = spec
        self.model = spec.id or spec.name
        self.extra_body = dict(spec.extra_body or {})
        self.retry_base_delay = float(retry_base_delay)
        self.retry_max_delay = float(retry_max_delay)
        self.paid = not is_local_url(spec.base_url)
        self.ledger = ledger_for(spec)  # the spending ledger; None: free (no price) or no spending settings
        self._local = threading.local()  # the hold of the item a worker thread is answering
        self._client = openai.OpenAI(
            base_url=spec.base_url,
            api_key=resolve_api_key(spec),
            max_retries=0,
            timeout=spec.timeout,
        )
        self._echo_mode = "auto" if echo is None else bool(echo)
        if spec.endpoint == "chat":
            self._echo: bool | None = False
            self.echo_status = "not applicable (chat endpoint)"
        elif echo is None:
            self._echo = None
            self.echo_status = "not checked yet"
        else:
            self._echo = bool(echo)
            self.echo_status = "forced on" if echo else "off"
        self._warned_empty = False
        self._warned_over = False

    def __repr__(self) -> str:
        return f"OpenAILM(model={self.model!r}, base_url={self.spec.base_url!r}, endpoint={self.spec.endpoint!r})"

    @property
    def echo_supported(self) -> bool | None:
        """True/False once known (or forced), None while unchecked."""
        return self._echo

    # ----------------------------------------------------------------------------------- plumbing

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model's outputs in the response cache (never the key)."""
        return {"backend": "openai", "base_url": self.spec.base_url, "model": self.model,
                "endpoint": self.spec.endpoint, "extra_body": self.extra_body, "echo": self._echo_mode}

    def attach_cache(self, hook) -> None:
        """Take a remembered echo verdict from the cache wrapped around this backend."""
        if self._echo is None:
            verdict = hook.recall("echo_check")
            if verdict is not None:
                self._set_echo(verdict, remember=False)

    def _request(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request. ``body`` holds the SDK arguments; ``extra_body`` is sent with it."""
        extra = dict(self.extra_body) or None
        create = self._client.completions.create if endpoint == "completions" else self._client.chat.completions.create

        def send():
            return create(**body, extra_body=extra)

        if self.ledger is not None:
            send = self._metered(send, body)
        resp = with_retries(self.spec, f"{endpoint} request", send, self.retry_base_delay, self.retry_max_delay)
        return resp.model_dump(mode="json")

    # ----------------------------------------------------------------------------------- spending

    def _metered(self, send: Callable[[], Any], body: dict[str, Any]) -> Callable[[], Any]:
        """``send`` with its cost in the ledger: each attempt reserves the request's upper bound first (drawing on
        the item's hold, if any), then records the ``usage`` cost of the answer. A request the server refused
        (HTTP error) or that never reached it (no connection) costs nothing; one without an answer (timeout, a
        connection lost on the way) is counted at its estimate, as it may have been billed."""
        messages = body.get("messages")
        text = messages[0]["content"] if messages else body["prompt"]
        est = estimate_cost(self.spec, [text], body["max_tokens"])
        ttl = 2 * float(self.spec.timeout) + 600

        def attempt():
            hold = getattr(self._local, "hold", None)
            rid = self.ledger.reserve(self.spec.name, est["usd"], within=hold, ttl_s=ttl)
            try:
                resp = send()
            except BaseException as e:
                if _never_billed(e):
                    self.ledger.release(rid)
                else:
                    self._record(rid, est, estimated=True)
                raise
            usage = getattr(resp, "usage", None)
            n_in, n_out = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
            if isinstance(n_in, int) and isinstance(n_out, int):
                actual = {"usd": price_of(self.spec, n_in, n_out), "input_tokens": n_in, "output_tokens": n_out}
                self._record(rid, actual, estimated=False)
                self._warn_over_estimate(actual, est)
            else:
                self._record(rid, est, estimated=True)
            return resp

        return attempt

    def _warn_over_estimate(self, actual: dict[str, Any], est: dict[str, Any]) -> None:
        """Once per backend: a request cost more than its upper bound (the server's tokenizer counts more input
        tokens than ``spec.tokenizer``), so spending can pass the cap by that much per request in flight."""
        if actual["usd"] > est["usd"] + 1e-12 and not self._warned_over:
            self._warned_over = True
            log.warning(
                "%s: a request cost %s, more than its estimate %s (%d input tokens counted by the server, %d by the "
                "%s encoding): the cap is enforced on estimates; set models.%s.tokenizer to the model's encoding",
                self.spec.name, usd(actual["usd"]), usd(est["usd"]), actual["input_tokens"], est["input_tokens"],
                self.spec.tokenizer or "cl100k_base", self.spec.name,
            )

    def _record(self, rid: str, cost: dict[str, Any], estimated: bool) -> None:
        self.ledger.record(rid, self.spec.name, cost["usd"], input_tokens=cost["input_tokens"],
                            output_tokens=cost["output_tokens"], estimated=estimated, model_id=self.model)

    @contextmanager
    def _hold(self, texts: Sequence[str], max_tokens: int) -> Iterator[None]:
        """Reserve the requests of one item (``texts``, ``max_tokens`` each) before its first, so the cap stops
        a batch between items, never inside one (whose paid answers would be lost: only whole items are cached)."""
        if self.ledger is None or len(texts) < 2:
            yield
            return
        amount = estimate_cost(self.spec, texts, max_tokens)["usd"]
        ttl = len(texts) * (self.spec.max_retries + 1) * (float(self.spec.timeout) + self.retry_max_delay) + 600
        self._local.hold = self.ledger.reserve(self.spec.name, amount, hold=True, ttl_s=ttl)
        try:
            yield
        finally:
            rid, self._local.hold = self._local.hold, None
            self.ledger.release(rid)

    def _log_spent(self) -> None:
        if self.ledger is not None:
            try:
                log.info("%s: %s", self.spec.name, self.ledger.describe())
            except Exception as e:  # noqa: BLE001 - a report must not hide the error of the batch
                log.warning("%s: the spending ledger cannot be read (%s)", self.spec.name, e)

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], emit: bool = False) -> list[Any]:
        """``fn`` over ``items`` on at most ``spec.max_concurrency`` threads, results in input order; with ``emit``
        each result is reported to the cache as soon as it is there (``items`` are then the call's item indices)."""
        if emit:
            inner = fn

            def fn(i):
                value = inner(i)
                self._emit(i, value)
                return value

        items = list(items)
        workers = max(1, min(int(self.spec.max_concurrency or 1), len(items)))
        try:
            if workers == 1:
                return [fn(x) for x in items]
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"openai-{self.spec.name}") as ex:
                return list(ex.map(fn, items))
        finally:
            self._log_spent()  # after each batch, also one the cap stopped

    @property
    def metered(self) -> bool:
        """Whether this model's requests are counted in a spending ledger (it has a price and spending settings)."""
        return self.ledger is not None

    def announce_cost(self, prompts: Sequence[str], max_tokens: int, logger: logging.Logger | None = None) -> dict:
        """Log (and return) :func:`estimate_cost` for ``prompts``, and the budget left under the spending cap;
        called before any request of a paid (or metered) run."""
        logger = logger or log
        est = estimate_cost(self.spec, prompts, max_tokens)
        cost = "unknown (no price_per_1k)" if est["usd"] is None else f"${est['usd']:.4f}"
        logger.info(
            "%s (%s): up to %d requests, ~%d input + %d output tokens, estimated cost %s "
            "(upper bound: cached requests are free)",
            self.spec.name, self.model, est["n_requests"], est["input_tokens"], est["output_tokens"], cost,
        )
        if self.ledger is not None:
            state = self.ledger.state()
            logger.info("%s: spending so far: %s", self.spec.name, self.ledger.describe(state))
            left = state["remaining_usd"]
            if left is not None and est["usd"] is not None and est["usd"] > left:
                logger.warning(
                    "%s: this batch may cost up to %s but only %s is left under spending.max_usd; it stops at the cap "
                    "(what is answered by then is cached)", self.spec.name, usd(est["usd"]), usd(left),
                )
        return est

    def _warn_empty(self, prompt: str) -> None:
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(
                "%s: the server returned no log-probs for a prompt (llama.cpp servers do this when the "
                "end-of-sequence token is the most likely next token); recorded as missing. To avoid it set "
                "extra_body: {logit_bias: {'<EOS token id>': -100}} for this model. Prompt ends: %r",
                self.spec.name, prompt[-60:],
            )

    # ----------------------------------------------------------------------------------- generate

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        if self.paid or self.metered:
            self.announce_cost(prompts, sampling.max_tokens)
        stop = [s for s in sampling.stop if s]

        def one(i: int) -> str:
            prompt = prompts[i]
            body: dict[str, Any] = {
                "model": self.model,
                "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "seed": sampling.seed,
            }
            if stop:
                body["stop"] = stop
            if self.spec.endpoint == "chat":
                body["messages"] = [{"role": "user", "content": prompt}]
                resp = self._request("chat", body)
                text = ((resp.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
            else:
                body["prompt"] = prompt
                resp = self._request("completions", body)
                text = (resp.get("choices") or [{}])[0].get("text") or ""
            return truncate_at_stop(text, stop)

        return self._map(one, range(len(prompts)), emit=True)

    # ----------------------------------------------------------------------------------- scoring

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], top_k: int = 5
    ) -> list[ChoiceScore]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        if self.paid or self.metered:
            texts = list(prompts)
            if self.spec.endpoint == "completions" and self._echo is not False:
                texts += [p + c for p, cs in zip(prompts, choices) for c in cs]
            self.announce_cost(texts, 1)
        if self.spec.endpoint == "chat":
            return self._map(lambda i: self._score_chat(prompts[i], choices[i], top_k), range(len(prompts)), emit=True)

        firsts = {}
        if self._echo is None:  # decided on the first prompt whose check is conclusive
            for i, prompt in enumerate(prompts):
                firsts[i] = self._score_next(prompt, top_k)
                if self._check_echo(prompt, firsts[i]):
                    break
            else:
                log.info("%s: echo check inconclusive on this batch; using top-k log-probs for it", self.spec.name)
        echo = bool(self._echo)

        def one(i: int) -> ChoiceScore:
            texts = ([] if i in firsts else [prompts[i]]) + ([prompts[i] + c for c in choices[i]] if echo else [])
            with self._hold(texts, 1):  # all of the item's requests, or none
                text, lp, top = firsts[i] if i in firsts else self._score_next(prompts[i], top_k)
                class_lps: dict[str, float | None] = {}
                for c in choices[i]:
                    value = self._echo_logprob(prompts[i], c)[0] if echo else None
                    if value is None:
                        value = top.get(c)  # the choice is one of the top-k next tokens, else missing
                    class_lps[c] = value
            return ChoiceScore(text=text, token_logprob=lp, top_logprobs=top, class_logprobs=class_lps)

        return self._map(one, range(len(prompts)), emit=True)

    def _score_next(self, prompt: str, top_k: int) -> tuple[str, float | None, dict[str, float]]:
        """Greedy next token, its log-prob and the top-k next tokens (completions endpoint)."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": top_k}
        resp = self._request("completions", body)
        choice = (resp.get("choices") or [{}])[0]
        lp = choice.get("logprobs") or {}
        token_lps = lp.get("token_logprobs") or []
        tops = lp.get("top_logprobs") or []
        text = choice.get("text") or ""
        if not token_lps:
            self._warn_empty(prompt)
            return text, None, {}
        top = {str(k): float(v) for k, v in (tops[0] or {}).items()} if tops else {}
        first = token_lps[0]
        return text, (None if first is None else float(first)), top

    def _score_chat(self, prompt: str, classes: Sequence[str], top_k: int) -> ChoiceScore:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": top_k,
        }
        resp = self._request("chat", body)
        choice = (resp.get("choices") or [{}])[0]
        content = (choice.get("logprobs") or {}).get("content") or []
        message_text = (choice.get("message") or {}).get("content") or ""
        if not content:
            self._warn_empty(prompt)
            return ChoiceScore(message_text, None, {}, {c: None for c in classes})
        first = content[0]
        top: dict[str, float] = {}
        for t in first.get("top_logprobs") or []:
            top.setdefault(str(t["token"]), float(t["logprob"]))
        class_lps = {c: _match_chat_token(c, top) for c in classes}
        lp = first.get("logprob")
        text = _chat_token_as_choice(first.get("token", message_text), classes)
        return ChoiceScore(text, None if lp is None else float(lp), top, class_lps)

    # ----------------------------------------------------------------------------------- echo

    def _echo_logprob(self, prompt: str, continuation: str, exact: bool = False) -> tuple[float | None, str]:
        """log P(continuation | prompt) from an echo request; (None, reason) when it cannot be read.

        Unless ``exact``, a trailing space of the prompt is moved to the continuation first (tokenizers
        attach spaces to the following word, so "A: " + "Yes" is scored as "A:" + " Yes").
        """
        if not exact and prompt.endswith(" ") and continuation and not continuation[0].isspace():
            prompt, continuation = prompt[:-1], " " + continuation
        if not continuation:
            return 0.0, "empty continuation"
        full = prompt + continuation
        # max_tokens=1, not 0: llama-cpp-python reads 0 as "generate until the context is full"
        body = {"model": self.model, "prompt": full, "max_tokens": 1, "temperature": 0, "logprobs": 1}
        body["echo"] = True
        resp = self._request("completions", body)
        choice = (resp.get("choices") or [{}])[0]
        if not (choice.get("text") or "").startswith(full):
            return None, "the server ignored echo (response text does not start with the prompt)"
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        token_lps = lp.get("token_logprobs") or []
        offsets = lp.get("text_offset")
        if not tokens or len(token_lps) != len(tokens):
            return None, "no prompt log-probs in the echo response"
        if not offsets or len(offsets) != len(tokens):
            offsets, pos = [], 0
            for t in tokens:
                offsets.append(pos)
                pos += len(t)
        n_prompt = (resp.get("usage") or {}).get("prompt_tokens") or len(tokens)
        idx = [i for i in range(min(n_prompt, len(tokens))) if len(prompt) <= offsets[i] < len(full)]
        if not idx:
            return None, _NO_TOKEN
        if offsets[idx[0]] != len(prompt):
            return None, _STRADDLE
        values = [token_lps[i] for i in idx]
        if any(v is None for v in values):
            return None, "missing log-prob for a continuation token"
        return float(sum(values)), "ok:" + "".join(str(tokens[i]) for i in idx)

    def _check_echo(self, prompt: str, first: tuple[str, float | None, dict]) -> bool:
        """Decide whether echo log-probs can be trusted from one scored prompt (see the class docstring); False
        when this prompt is inconclusive."""
        text, lp, _top = first
        if not text or lp is None:
            return False
        verdict = self._run_echo_check(prompt, text, lp)
        if verdict.get("supported") is None:
            return False  # inconclusive for this prompt (tokenization)
        self._set_echo(verdict)
        return True

    def _set_echo(self, verdict: dict[str, Any], remember: bool = True) -> None:
        self._echo = bool(verdict["supported"])
        self.echo_status = ("supported: " if self._echo else "unsupported: ") + verdict["reason"]
        log.log(logging.INFO if self._echo else logging.WARNING, "%s: echo log-probs %s", self.spec.name,
                self.echo_status)
        if remember and self.cache_hook is not None:
            self.cache_hook.remember("echo_check", verdict)

    def _run_echo_check(self, prompt: str, token: str, token_logprob: float) -> dict[str, Any]:
        try:
            value, reason = self._echo_logprob(prompt, token, exact=True)
        except OpenAIBackendError as e:
            cause = e.__cause__
            status = getattr(cause, "status_code", 0)
            if 400 <= status < 500 and status not in (408, 409, 429):  # rejected, not throttled
                return {"supported": False, "reason": f"the server rejected echo ({e})"}
            raise
        if value is None:
            if reason in (_STRADDLE, _NO_TOKEN):
                return {"supported": None, "reason": reason}
            return {"supported": False, "reason": reason}
        if reason != "ok:" + token:
            return {"supported": None, "reason": "the greedy token is re-tokenized differently after the prompt"}
        if abs(value - token_logprob) > ECHO_CHECK_TOLERANCE:
            return {
                "supported": False,
                "reason": (
                    f"echoed log-prob of {token!r} is {value:.4f} but the scoring request gave "
                    f"{token_logprob:.4f} (misaligned prompt log-probs)"
                ),
            }
        return {"supported": True, "reason": f"echoed log-prob of {token!r} matches ({value:.4f})"}

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float | None]:
        """log P(continuation | context) per pair via echo requests (completions endpoint only).

        A pair whose continuation cannot be isolated (a token straddling the boundary) gets None.
        """
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        if self.spec.endpoint == "chat":
            raise NotImplementedError(
                f"model {self.spec.name!r}: loglikelihood needs prompt log-probs, which chat completion APIs "
                "do not return; use a completions endpoint"
            )
        if self.paid or self.metered:
            self.announce_cost([c + x for c, x in zip(contexts, continuations)], 1)
        if self._echo is None:
            for ctx in contexts:
                if self._check_echo(ctx, self._score_next(ctx, 1)):
                    break
        if not self._echo:
            raise NotImplementedError(
                f"model {self.spec.name!r} at {self.spec.base_url}: loglikelihood needs echoed prompt log-probs "
                f"(echo=True), which this server does not provide reliably (echo {self.echo_status})"
            )
        return self._map(lambda i: self._echo_logprob(contexts[i], continuations[i])[0], range(len(contexts)),
                         emit=True)


def _never_billed(err: BaseException) -> bool:
    """Whether a request that raised ``err`` cannot have been billed: the server answered with an error status, or
    no connection was ever made (anything else -- a timeout, a connection lost mid-way -- may have been)."""
    import openai  # the SDK

    if isinstance(err, openai.APIStatusError):
        return True
    # the transport error the SDK wraps, by name: its HTTP library is httpx or, in newer SDKs, a copy of it
    return isinstance(err, openai.APIConnectionError) and type(err.__cause__).__name__ in _NOT_CONNECTED


def _chat_token_as_choice(token: str, classes: Sequence[str]) -> str:
    """The choice a chat reply's first token stands for (exact, else whitespace-stripped, as in
    :func:`_match_chat_token`: "Yes" is the choice " Yes"); the token itself when it matches none."""
    if token in classes:
        return token
    key = token.strip()
    return next((c for c in classes if key and c.strip() == key), token)


def _match_chat_token(choice: str, top: dict[str, float]) -> float | None:
    """A choice's log-prob among a chat reply's first-token top-k: exact match, else whitespace-stripped.

    Several top-k tokens can strip to the same text ("Yes", " Yes"); their probabilities are summed.
    """
    if choice in top:
        return top[choice]
    key = choice.strip()
    if not key:
        return None
    matches = [v for t, v in top.items() if t.strip() == key]
    if not matches:
        return None
    value = logsumexp(matches)
    return None if math.isinf(value) else value


__all__ = ["OpenAILM"]
