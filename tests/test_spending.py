"""The spending cap of paid API requests: the ledger itself, and the openai backend under a cap against the real
OpenAI-compatible server of tests/test_openai_backend.py (llama-cpp-python's, behind its counting proxy; no mocks).

The local server is free, so these tests give its model a ``price_per_1k``: that is what makes requests paid
(metered), whatever the URL.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import yaml

from talltales.config import model_entry, validate
from talltales.lm import load_lm, spec_from_entry
from talltales.lm.base import Sampling
from talltales.lm.cache import ResponseCache
from talltales.lm.cost import estimate_cost, price_of
from talltales.lm.openai import OpenAILM
from talltales.lm.spend import (
    CAP_ENV,
    CAP_KEY,
    Ledger,
    SpendingCapError,
    SpendingError,
    ledger_for,
    publish_cap,
    spending_for,
)
from test_openai_backend import (  # noqa: F401 - the server fixtures
    ALIAS,
    COMPLETIONS,
    EOS_ID,
    KEY_ENV,
    SECRET,
    YES_NO,
    _free_port,
    _proxy,
    make_spec,
    proxy,
    server,
)

REPO = Path(__file__).resolve().parents[1]
PRICE = {"input": 1.0, "output": 2.0}  # USD per 1000 tokens: far above any real price, so amounts are readable
NO_EOS = {"logit_bias": {"0": -100, "2": -100}}  # SmolLM2's end tokens: every completion runs to max_tokens
SPAWN = mp.get_context("spawn")  # no fork of a process that runs the proxy's threads


def metered_spec(url: str, ledger: Path, max_usd: float | None, **kw):
    return make_spec(url, price_per_1k=kw.pop("price_per_1k", PRICE),
                     spending={"max_usd": max_usd, "ledger": str(ledger)}, **kw)  # fmt: skip


def usage_costs(calls: list[dict], spec) -> list[float]:
    """The cost at ``spec``'s price of every answered call the proxy saw, from the server's ``usage``."""
    out = []
    for c in calls:
        usage = (c.get("response") or {}).get("usage") if c.get("status") == 200 else None
        if usage:
            out.append(price_of(spec, usage["prompt_tokens"], usage["completion_tokens"]))
    return out


def read_ledger(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ the ledger


def test_ledger_keeps_the_total_and_per_model_totals(tmp_path):
    path = tmp_path / "spend" / "ledger.json"
    ledger = Ledger(path, max_usd=None)
    a = ledger.reserve("gpt-a", 0.5)
    b = ledger.reserve("gpt-b", 0.25)
    assert ledger.state()["reserved_usd"] == pytest.approx(0.75)
    ledger.record(a, "gpt-a", 0.125, input_tokens=100, output_tokens=20, model_id="a-2024")
    ledger.record(b, "gpt-b", 0.25, estimated=True)
    c = ledger.reserve("gpt-a", 0.5)
    ledger.release(c)  # refused by the server: costs nothing
    data = read_ledger(path)
    assert data["version"] == 1 and data["reserved"] == {}
    assert data["spent_usd"] == pytest.approx(0.375) and data["requests"] == 2
    assert data["models"]["gpt-a"] == {"id": "a-2024", "spent_usd": 0.125, "requests": 1, "input_tokens": 100,
                                       "output_tokens": 20, "estimated_requests": 0}
    assert data["models"]["gpt-b"]["estimated_requests"] == 1
    # across reruns: a new ledger on the same file starts from what was spent; no cap never refuses
    again = Ledger(path)
    assert again.state()["spent_usd"] == pytest.approx(0.375) and again.state()["remaining_usd"] is None
    again.record(again.reserve("gpt-a", 1e6), "gpt-a", 1.0)
    assert read_ledger(path)["spent_usd"] == pytest.approx(1.375)
    assert "no cap" in again.describe() and CAP_KEY in again.describe()


def test_ledger_refuses_what_would_pass_the_cap(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = Ledger(path, max_usd=1.0)
    ledger.record(ledger.reserve("m", 0.7), "m", 0.7)
    held = ledger.reserve("m", 0.2)
    assert ledger.reserve("m", 0.1)  # exactly at the cap: allowed
    with pytest.raises(SpendingCapError) as err:
        ledger.reserve("m", 0.05)
    e = err.value
    assert (e.cap, e.estimate, e.model, e.ledger) == (1.0, 0.05, "m", str(path))
    assert e.spent == pytest.approx(0.7) and e.reserved == pytest.approx(0.3)
    msg = str(e)
    for part in (CAP_KEY, "$1.000000", "$0.700000", "$0.050000", "$0.300000", str(path), "not sent"):
        assert part in msg, (part, msg)
    assert ledger.state()["reserved_usd"] == pytest.approx(0.3)  # the refused one reserved nothing
    ledger.release(held)
    assert ledger.reserve("m", 0.15)  # a released reservation frees its amount
    assert "left" in ledger.describe()


def test_a_hold_reserves_an_item_whose_requests_draw_on_it(tmp_path):
    ledger = Ledger(tmp_path / "ledger.json", max_usd=1.0)
    hold = ledger.reserve("m", 0.6, hold=True)
    with pytest.raises(SpendingCapError):
        ledger.reserve("m", 0.5)  # another item cannot take what the hold keeps
    first = ledger.reserve("m", 0.3, within=hold)  # drawn from the hold: no new check, the total unchanged
    assert ledger.state()["reserved_usd"] == pytest.approx(0.6)
    ledger.record(first, "m", 0.25)
    second = ledger.reserve("m", 0.3, within=hold)
    ledger.release(second)  # back into the hold
    assert ledger.state()["reserved"][hold]["usd"] == pytest.approx(0.3)
    ledger.release(hold)
    s = ledger.state()
    assert s["reserved"] == {} and s["spent_usd"] == pytest.approx(0.25) and s["remaining_usd"] == pytest.approx(0.75)
    h2 = ledger.reserve("m", 0.1, hold=True)  # fits: 0.25 spent + 0.1 held of the 1.0 cap
    with pytest.raises(SpendingCapError):  # more than a hold has left is a reservation of its own, checked
        ledger.reserve("m", 0.7, within=h2)


def _reserve_and_die(path: str) -> None:
    Ledger(path, max_usd=1.0).reserve("m", 0.25)
    Ledger(path, max_usd=1.0).reserve("m", 0.5, hold=True)
    os._exit(0)  # killed: neither recorded nor released


def test_what_a_dead_or_late_process_reserved_counts_as_spent(tmp_path, caplog):
    path = tmp_path / "ledger.json"
    child = SPAWN.Process(target=_reserve_and_die, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and len(read_ledger(path)["reserved"]) == 2
    with caplog.at_level(logging.WARNING, logger="talltales.lm.spend"):
        s = Ledger(path, max_usd=1.0).state()
    # the request may have been billed: counted at its reservation; the hold made no request: dropped
    assert s["reserved"] == {} and s["spent_usd"] == pytest.approx(0.25)
    assert s["models"]["m"]["estimated_requests"] == 1 and "never settled" in caplog.text
    # a reservation past its time limit (e.g. of another host, whose pid cannot be checked) likewise
    ledger = Ledger(path, max_usd=1.0)
    ledger.reserve("m", 0.125, ttl_s=-1)
    assert ledger.state()["spent_usd"] == pytest.approx(0.375)


def test_an_unreadable_ledger_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(SpendingError, match=rf"ledger {path} cannot be read.*deleting it forgets"):
        Ledger(path, 1.0).reserve("m", 0.1)
    assert path.read_text() == "{not json"  # left as it was


def _hammer(path: str, n: int, barrier) -> tuple[int, int]:
    ledger, ok, refused = Ledger(path, max_usd=0.5), 0, 0
    barrier.wait(120)
    for _ in range(n):
        try:
            rid = ledger.reserve("m", 0.01)
        except SpendingCapError:
            refused += 1
            continue
        ledger.record(rid, "m", 0.01)
        ok += 1
    return ok, refused


def test_processes_sharing_a_ledger_cannot_pass_the_cap_together(tmp_path):
    path = tmp_path / "ledger.json"
    with SPAWN.Manager() as manager:
        barrier = manager.Barrier(4)
        with SPAWN.Pool(4) as pool:
            results = pool.starmap(_hammer, [(str(path), 30, barrier)] * 4)
    assert sum(ok for ok, _ in results) == 50 and sum(r for _, r in results) == 70
    data = read_ledger(path)
    assert data["spent_usd"] == pytest.approx(0.5) and data["requests"] == 50 and data["reserved"] == {}


# ------------------------------------------------------------------------------------------ config -> backend


def test_the_setting_reaches_the_spec_of_paid_models_only(tmp_path, monkeypatch):
    cfg = validate(copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text())))
    assert cfg["spending"] == {"max_usd": None, "ledger": "resources/spend/ledger.json"}  # schema defaults
    ledger = str(tmp_path / "ledger.json")
    cfg["spending"] = {"max_usd": "2.5e0", "ledger": ledger}  # a number YAML reads as text is the number
    cfg["models"]["paid"] = {"backend": "openai", "kind": "base", "id": "davinci-002", "api_key_env": KEY_ENV,
                             "base_url": "https://api.openai.com/v1", "price_per_1k": {"input": 0.002, "output": 0.002}}
    cfg["models"]["local"] = {"backend": "openai", "kind": "base", "id": "m", "base_url": "http://127.0.0.1:9/v1"}
    cfg = validate(cfg)
    assert cfg["spending"]["max_usd"] == 2.5
    spec = spec_from_entry(model_entry(cfg, "paid"))
    assert spec.spending == {"ledger": ledger}  # the cap is not in the entry (a param): raising it reruns nothing
    assert model_entry(dict(cfg, spending={"max_usd": 10.0, "ledger": ledger}), "paid") == model_entry(cfg, "paid")
    assert "spending" not in model_entry(cfg, "local") and "spending" not in model_entry(cfg, "gemma3-270m")
    assert "spending" not in cfg["models"]["paid"]  # the registry itself is not modified
    monkeypatch.setenv(CAP_ENV, "")  # (restored after the test)
    publish_cap(cfg["spending"])  # what the workflow does in every job: the cap reaches the backends
    monkeypatch.setenv(KEY_ENV, SECRET)
    lm = OpenAILM(spec)
    assert lm.metered and lm.ledger.cap() == 2.5 and lm.ledger.path == Path(ledger)
    publish_cap({"max_usd": None, "ledger": ledger})
    assert OpenAILM(spec).ledger.cap() is None
    assert not OpenAILM(spec_from_entry(model_entry(cfg, "local"))).metered
    with pytest.raises(Exception, match="spending"):
        validate(dict(cfg, spending={"max_usd": -1}))


def test_an_unpriced_openai_api_model_under_a_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    spending = {"max_usd": 5.0, "ledger": str(tmp_path / "ledger.json")}
    entry = {"name": "gpt-x", "backend": "openai", "kind": "instruct", "id": "gpt-4o-mini",
             "base_url": "https://api.openai.com/v1", "api_key_env": KEY_ENV}
    carried = spending_for(entry, spending)
    assert carried == {"ledger": spending["ledger"]}  # so that the backend can refuse it under a cap
    # no cap: nothing to enforce, and the ledger is neither read nor made
    assert not OpenAILM(spec_from_entry(dict(entry, spending=carried))).metered
    assert not (tmp_path / "ledger.json").exists()
    local = dict(entry, base_url="http://127.0.0.1:9/v1")  # a local server without a price: free
    assert spending_for(local, spending) is None
    assert ledger_for(spec_from_entry(dict(local, spending=spending))) is None
    assert not (tmp_path / "ledger.json").exists()
    with pytest.raises(SpendingError, match=r"models\.gpt-x\.price_per_1k.*spending\.max_usd = \$5\.000000"):
        OpenAILM(spec_from_entry(dict(entry, spending=spending)))  # a cap given to the library directly
    monkeypatch.setenv(CAP_ENV, "")  # (restored after the test)
    publish_cap(spending)  # the workflow's cap, handed to the backends
    with pytest.raises(SpendingError, match=r"models\.gpt-x\.price_per_1k.*spending\.max_usd = \$5\.000000"):
        OpenAILM(spec_from_entry(dict(entry, spending=carried)))


# ------------------------------------------------------------------------------------------ real server


@pytest.mark.slow
def test_a_large_enough_cap_lets_everything_through_and_the_ledger_holds_the_usage_cost(proxy, tmp_path, caplog):
    path = tmp_path / "spend" / "ledger.json"
    db = tmp_path / "cache.sqlite"
    spec = metered_spec(proxy.url, path, 100.0)
    prompts = ["The capital of France is", "1, 2, 3, 4,", "Once upon a time", "The opposite of hot is"]
    with caplog.at_level(logging.INFO):
        cache = ResponseCache(db)
        lm = load_lm(spec, cache)
        out = lm.generate(prompts, Sampling(max_tokens=6, stop=("\n",)))
        scores = lm.score_choices([YES_NO, "Q: Is fire cold? Answer Yes or No.\nA:"], [[" Yes", " No"]] * 2)
        load_lm(metered_spec(proxy.url, path, 100.0, endpoint="chat"), cache).generate(["Hi"], Sampling(max_tokens=4))
    assert len(out) == 4 and len(scores) == 2
    costs = usage_costs(proxy.calls, spec)
    assert len(costs) == proxy.count() >= 7  # every request answered, with usage
    data = read_ledger(path)
    assert data["reserved"] == {} and data["requests"] == len(costs)
    assert data["spent_usd"] == pytest.approx(sum(costs), rel=1e-9)
    model = data["models"]["smol-api"]
    assert model["estimated_requests"] == 0 and model["spent_usd"] == pytest.approx(sum(costs), rel=1e-9)
    usages = [c["response"]["usage"] for c in proxy.calls]
    assert model["input_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert model["output_tokens"] == sum(u["completion_tokens"] for u in usages)
    # logged: what is left before a batch, what was spent after it; never the key
    spend_lines = [r.getMessage() for r in caplog.records if "spent on" in r.getMessage()]
    assert spend_lines[0].startswith("smol-api: spending so far: $0.000000 spent on 0 paid requests")
    assert "left" in spend_lines[0] and f"{len(costs)} paid requests" in spend_lines[-1]
    assert SECRET not in caplog.text and SECRET not in path.read_text()
    # a rerun from the cache costs nothing
    cache.close()
    n_calls = proxy.count()
    again = load_lm(spec, ResponseCache(db)).generate(prompts, Sampling(max_tokens=6, stop=("\n",)))
    assert again == out and proxy.count() == n_calls and read_ledger(path)["spent_usd"] == data["spent_usd"]


@pytest.mark.slow
def test_the_cap_stops_a_batch_before_the_request_that_would_pass_it_and_a_rerun_sends_only_the_rest(proxy, tmp_path):
    prompts = ["The capital of France is", "Once upon a time", "The opposite of hot is", "Monday, Tuesday,",
               "1, 2, 3, 4,"]
    sampling = Sampling(max_tokens=6)
    kw = {"max_concurrency": 1, "extra_body": NO_EOS}
    path, db = tmp_path / "ledger.json", tmp_path / "cache.sqlite"
    # what each request costs (the server's usage; greedy decoding repeats it) and its upper-bound estimate
    expected = OpenAILM(make_spec(proxy.url, **kw)).generate(prompts, sampling)
    spec = metered_spec(proxy.url, path, None, **kw)
    actual = usage_costs(proxy.calls, spec)
    estimates = [estimate_cost(spec, [p], sampling.max_tokens)["usd"] for p in prompts]
    # a cap that admits requests 0-2 and refuses request 3: spent (usage of those before) + its estimate
    before = [sum(actual[:i]) for i in range(len(prompts))]
    admitted = max(before[i] + estimates[i] for i in range(3))
    refused = before[3] + estimates[3]
    assert admitted < refused, (actual, estimates)
    cap = (admitted + refused) / 2

    proxy.reset()
    cache = ResponseCache(db)
    with pytest.raises(SpendingCapError) as err:
        load_lm(metered_spec(proxy.url, path, cap, **kw), cache).generate(prompts, sampling)
    e = err.value
    assert proxy.count(COMPLETIONS) == 3  # the fourth request was never sent
    assert e.spent == pytest.approx(before[3]) and e.estimate == pytest.approx(estimates[3]) and e.cap == cap
    assert CAP_KEY in str(e) and str(path) in str(e)
    assert len(cache) == 3  # the answered requests are in the response cache
    data = read_ledger(path)
    assert data["spent_usd"] == pytest.approx(before[3]) and data["spent_usd"] <= cap and data["reserved"] == {}
    cache.close()

    # a higher cap: the rerun sends only the two missing requests, and the outputs are the uncapped run's
    proxy.reset()
    cache = ResponseCache(db)
    out = load_lm(metered_spec(proxy.url, path, cap * 10, **kw), cache).generate(prompts, sampling)
    assert out == expected and proxy.count(COMPLETIONS) == 2 and (cache.hits, cache.misses) == (3, 2)
    data = read_ledger(path)
    assert data["requests"] == 5 and data["spent_usd"] == pytest.approx(sum(actual))
    cache.close()


@pytest.mark.slow
def test_scoring_items_are_stopped_whole(proxy, tmp_path):
    """An item of several requests (the next-token request + one echo request per choice) reserves them all before
    its first: the cap stops the batch between items, so no paid answer is lost (only whole items are cached)."""
    path = tmp_path / "ledger.json"
    prompts = [YES_NO, "Q: Is fire cold? Answer Yes or No.\nA:", "Q: Is ice hot? Answer Yes or No.\nA:"]
    choices = [" Yes", " No"]
    spec = metered_spec(proxy.url, path, None, max_concurrency=1)
    item = estimate_cost(spec, [prompts[0]] + [prompts[0] + c for c in choices], 1)["usd"]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    capped = load_lm(metered_spec(proxy.url, path, 1.5 * item, max_concurrency=1), cache, echo=True)
    with pytest.raises(SpendingCapError):
        capped.score_choices(prompts, [choices] * 3)
    # the first item (1 + 2 echo requests) fits; the second is refused before its first request
    assert proxy.count(COMPLETIONS) == 3 and proxy.count(COMPLETIONS, echo=True) == 2 and len(cache) == 1
    data = read_ledger(path)
    assert data["requests"] == 3 and data["reserved"] == {}
    cache.close()


@pytest.mark.slow
def test_refused_or_unsent_requests_cost_nothing_and_a_retried_one_costs_once(proxy, tmp_path):
    path = tmp_path / "ledger.json"
    spec = metered_spec(proxy.url, path, 1.0, max_retries=3)
    proxy.fail = [429, 500]
    lm = load_lm(spec, retry_base_delay=0.01, retry_max_delay=0.05)
    lm.generate(["The capital of France is"], Sampling(max_tokens=4))
    data = read_ledger(path)
    assert proxy.count() == 3 and data["requests"] == 1
    assert data["spent_usd"] == pytest.approx(sum(usage_costs(proxy.calls, spec)))
    proxy.reset()
    proxy.fail = [400]
    with pytest.raises(Exception, match="HTTP 400"):
        lm.generate(["Once upon a time"], Sampling(max_tokens=4))
    dead = OpenAILM(metered_spec(f"http://127.0.0.1:{_free_port()}/v1", path, 1.0, max_retries=1),
                    retry_base_delay=0.01)
    with pytest.raises(Exception, match="APIConnectionError"):
        dead.generate(["x"], Sampling(max_tokens=4))
    after = read_ledger(path)
    assert (after["requests"], after["spent_usd"], after["reserved"]) == (1, data["spent_usd"], {})


def _capped_run(spec, cache: str, prompts: list[str], barrier, results) -> None:
    barrier.wait(120)
    try:
        load_lm(spec, ResponseCache(cache)).generate(prompts, Sampling(max_tokens=4))
        results.put(("done", None))
    except SpendingCapError as e:
        results.put(("cap", str(e)))


@pytest.mark.slow
def test_two_processes_sharing_a_ledger_cannot_pass_the_cap_together(proxy, tmp_path):
    """Output-only price and completions that run to max_tokens: every request costs its estimate exactly, so the
    cap admits exactly 5 requests, whichever process sends them."""
    path = tmp_path / "ledger.json"
    price = {"input": 0.0, "output": 1.0}
    per_request = 4 / 1000 * 1.0
    cap = 5.5 * per_request
    spec = metered_spec(proxy.url, path, cap, price_per_1k=price, max_concurrency=2, extra_body=NO_EOS)
    jobs = [[f"Story {k}.{i}: Once upon a time" for i in range(6)] for k in range(2)]  # 6 each: both hit the cap
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [SPAWN.Process(target=_capped_run, args=(spec, str(tmp_path / f"cache{k}.sqlite"), jobs[k], barrier,
                                                     results)) for k in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [kind for kind, _ in outcomes] == ["cap", "cap"], outcomes
    assert all(CAP_KEY in msg for _, msg in outcomes)
    costs = usage_costs(proxy.calls, spec)
    data = read_ledger(path)
    assert proxy.count(COMPLETIONS) == len(costs) == data["requests"] == 5
    assert data["spent_usd"] == pytest.approx(sum(costs)) and data["spent_usd"] <= cap
    assert data["reserved"] == {}
    sent = {c["body"]["prompt"] for c in proxy.calls}
    assert sent <= set(jobs[0]) | set(jobs[1])


@pytest.mark.slow
def test_the_workflow_stops_at_the_cap_and_raising_it_reruns_only_the_unfinished_job(server, tmp_path, monkeypatch):
    """Study 1's real rules with a priced model on the local server: the cap lets the first dataset's scoring
    through and stops the second's before its first request; raising the cap in config.yaml plans only the stopped
    job (the cap is in no job's params) and the rerun completes it."""
    from conftest import make_config, planned_rules, snakemake, write_config

    datasets = {}
    for name, n in (("first", 2), ("second", 3)):
        rows = [{"question": f"Is {k} larger than {k + 1}?", "answer_matching_behavior": " No",
                 "answer_not_matching_behavior": " Yes"} for k in range(n)]
        datasets[name] = tmp_path / f"{name}.jsonl"
        datasets[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    ledger = tmp_path / "spend" / "ledger.json"
    cfg = make_config(tmp_path, mwe={"datasets": {k: str(v) for k, v in datasets.items()}})
    cfg["models"]["paid-server"] = {
        "backend": "openai", "id": ALIAS, "base_url": server["url"], "api_key_env": KEY_ENV, "kind": "instruct",
        "params": 134515008, "price_per_1k": PRICE, "extra_body": {"logit_bias": {str(EOS_ID): -100}},
    }  # fmt: skip
    cfg["mwe"]["eval_models"] = ["paid-server"]
    cfg["spending"] = {"max_usd": 100.0, "ledger": str(ledger)}
    write_config(tmp_path, cfg)
    monkeypatch.setenv(KEY_ENV, SECRET)
    tables = {k: f"results/mwe/tables/{k}.csv" for k in datasets}
    snakemake(tmp_path, tables["first"])
    spent_first = read_ledger(ledger)["spent_usd"]
    assert spent_first > 0
    cfg["spending"]["max_usd"] = spent_first * 1.01  # nothing is left for the second dataset
    write_config(tmp_path, cfg)
    stopped = snakemake(tmp_path, tables["first"], tables["second"], check=False)
    assert stopped.returncode != 0
    log = (tmp_path / "logs" / "mwe" / "eval" / "second" / "paid-server.log")
    assert CAP_KEY in (stopped.stdout + stopped.stderr + (log.read_text() if log.exists() else ""))
    assert read_ledger(ledger)["spent_usd"] == pytest.approx(spent_first)  # not one request of the second was sent
    cfg["spending"]["max_usd"] = 100.0
    write_config(tmp_path, cfg)
    assert planned_rules(tmp_path, tables["first"], tables["second"]).get("mwe_eval") == 1  # the stopped job only
    snakemake(tmp_path, tables["first"], tables["second"])
    assert read_ledger(ledger)["spent_usd"] > spent_first
    assert (tmp_path / tables["second"]).exists()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
