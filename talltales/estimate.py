"""What a config will cost before it runs (``talltales estimate CONFIG``): GPU-hours per stage and API dollars.

An estimate from the models' parameter counts and the config's sizes, not a measurement; the assumptions are the
module's constants (each a command-line option):

* Training and scoring are compute-bound: a token costs ``6 N`` FLOPs to train with every weight (forward and
  backward), ``4 N`` with LoRA or frozen weights (no weight gradients), ``+2 N`` with gradient checkpointing
  (the forward again), ``2 N`` to score; the GPU sustains ``FLOPS`` (default 1.2e14: an A100-80GB's 312 TFLOP/s
  of bf16 at about 40 % utilisation).
* Generation is latency-bound: each new token of a batch takes the larger of ``DECODE_MS`` (the per-step cost
  of ``generate`` at small batch sizes) and the time to read the weights once (``2 N`` bytes at ``HBM`` B/s).
* Every job also pays ``JOB_S`` seconds of start-up and the time to read its models (``2 N`` bytes at 1 GB/s).
* A MultiRC item is ``MRC_TOKENS`` tokens (the filter keeps prompts under 128 judge tokens; plus the answer),
  a study-1 prompt is its template's tokens plus ``QUESTION_TOKENS``.
* Study 1's negated twins are written for a list the size of a final list per negated dataset, and scored like a
  list; each answer format scores the lists again (but one that is the eval's own: its requests are the eval's,
  cached); the two studies joined score every study-2 checkpoint on each
  list of ``cross.datasets``.
* API cost: every request's prompt tokens (tiktoken's count of the config's own prompt texts) and its
  ``max_tokens`` at the registry's ``price_per_1k``; a scored item on a completions endpoint is 1 + one echo
  request per class (the upper bound: where the server supports echo); the lists shrink by the original study's
  measured shares (longlist 900 -> shortlist 640 -> final 490) -- an upper bound, since cached requests cost
  nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .lm.cost import count_tokens

#: The original study 1's list sizes: the share of the longlist that reaches the shortlist and the final list.
SHORTLIST_SHARE, FINAL_SHARE = 640 / 900, 490 / 900


@dataclass
class Assumptions:
    flops: float = 1.2e14  # sustained FLOP/s of one GPU (A100-80GB bf16 at ~40 %)
    decode_ms: float = 30.0  # floor of one generation step (one new token for the whole batch)
    hbm: float = 1.5e12  # bytes/s the weights are read at while generating
    job_s: float = 90.0  # start-up of a job (interpreter, imports, CUDA context)
    mrc_tokens: int = 160  # one MultiRC prompt with its answer
    question_tokens: int = 24  # one study-1 question
    gen_batch: int = 16  # evaluation's generation batch


def _params(cfg: dict, name: str) -> float:
    p = cfg["models"][name].get("params")
    if p is None:
        raise ValueError(f"config key models.{name}.params: needed for the estimate (a parameter count)")
    return float(p)


def _step_s(a: Assumptions, n: float) -> float:
    return max(a.decode_ms / 1000, 2 * n / a.hbm)


def _load_s(a: Assumptions, *ns: float) -> float:
    return a.job_s + sum(2 * n for n in ns) / 1e9


def _train_factor(section: dict) -> float:
    frozen = section.get("lora") or section.get("freeze_embeddings")
    return (4 if frozen else 6) + (2 if section.get("gradient_checkpointing") else 0)


def _deception(cfg: dict, a: Assumptions) -> dict[str, float]:
    """GPU-seconds per study-2 stage."""
    from .deception.checks import stage_settings, techniques

    dec, t = cfg["deception"], a.mrc_tokens
    seeds, levels = len(dec.get("seeds") or [dec["seed"]]), len(dec["poisoning"])
    nj = _params(cfg, dec["judge"]["backbone"])
    judge = dec["judge"]
    out = {"judge": 2 * (_load_s(a, nj) + judge["train_size"] * judge["epochs"] * t * _train_factor(judge) * nj
                         / a.flops)}
    out.update(warmup=0.0, sft=0.0, rl=0.0, eval=0.0)
    ev = dec["eval"]
    items = (ev["n_fruit"] + ev["n_other"]) * len(ev["shots"])
    for policy in dec["policies"]:
        n = _params(cfg, policy)
        trained = techniques(dec, policy)
        if "rl" in trained:
            w = stage_settings(dec, "warmup", policy)
            out["warmup"] += seeds * (_load_s(a, n) + w["size"] * w["epochs"] * t * _train_factor(w) * n / a.flops)
            r = stage_settings(dec, "rl", policy)
            samples = r["steps"] * r["batch_size"] * r["num_generations"]
            update = samples * t * (_train_factor(r) * n + 2 * n + 2 * nj) / a.flops
            sample = r["steps"] * r["max_new_tokens"] * _step_s(a, n)
            held = (r["steps"] // r["eval_every"] + 1) * math.ceil(r["eval_prompts"] / r["eval_batch_size"]) * (
                r["max_new_tokens"] * _step_s(a, n))
            out["rl"] += seeds * levels * (_load_s(a, n, nj) + update + sample + held)
        if "sft" in trained:
            s = stage_settings(dec, "sft", policy)
            demos = s["size"] / 2  # the label-1 rows of the mix
            out["sft"] += seeds * levels * (_load_s(a, n) + demos * s["epochs"] * t * _train_factor(s) * n / a.flops)
        checkpoints = 1 + seeds * (levels * len(trained) + ("rl" in trained))  # base, (warm-up,) each level
        generate = math.ceil(items / a.gen_batch) * ev["max_new_tokens"] * _step_s(a, n)
        score = items * t * 2 * (n + 2 * nj) / a.flops
        out["eval"] += checkpoints * (_load_s(a, n, nj, nj) + generate + score)
        mwe = cfg.get("mwe")
        cross = cfg.get("cross", {}).get("datasets", []) if mwe else []
        if cross:  # the two studies joined: every checkpoint scores study 1's lists (talltales/cross.py)
            longlist = sum(p["n"] for p in mwe["longlist"]["prompts"])
            prompt = count_tokens(mwe["eval"]["body"]) + a.question_tokens
            out["cross"] = out.get("cross", 0.0) + checkpoints * len(cross) * (
                _load_s(a, n) + longlist * FINAL_SHARE * prompt * 2 * n / a.flops)
    return out


def _negation_items(mwe: dict) -> float:
    """Items that get a negated twin written (each negated list the size of a final list)."""
    longlist = sum(p["n"] for p in mwe["longlist"]["prompts"])
    return longlist * FINAL_SHARE * len(mwe.get("negation", {}).get("datasets", []))


def _negation_generator(mwe: dict) -> str | None:
    neg = mwe.get("negation", {})
    if not neg.get("datasets") or neg.get("source", "lm") != "lm":
        return None
    return neg.get("generator") or mwe["longlist"]["generator"]


def _scoring_stages(mwe: dict, a: Assumptions) -> list[tuple[str, list[str], float, float, list[str], int]]:
    """Study 1's scoring stages: (stage, models, items each model scores, prompt tokens, classes, jobs per model),
    the lists shrinking by the original's shares; the twins count as a list each, and every answer format scores
    the lists again."""
    longlist = sum(p["n"] for p in mwe["longlist"]["prompts"])
    n_lists = len(mwe["eval_datasets"])
    n_twins = len(mwe.get("negation", {}).get("datasets", []))
    ev = mwe["eval"]
    chosen = ev.get("format_datasets")  # null: every list
    n_format_lists = n_lists if chosen is None else len([d for d in chosen if d in mwe["eval_datasets"]])
    formats = [(name, f) for name, f in (ev.get("formats") or {}).items()  # the eval's own format: cached, free
               if (f["template"], f.get("body") or ev["body"], list(f["classes"])) != (ev["template"], ev["body"],
                                                                                     list(mwe["classes"]))]
    return [
        ("label_check", [mwe["label_check"]["checker"]], longlist,
         count_tokens(mwe["label_check"]["body"]) + a.question_tokens, mwe["classes"], 1),
        ("harsh_check", [mwe["harsh_check"]["checker"]], longlist * SHORTLIST_SHARE * 2,
         count_tokens(mwe["harsh_check"]["body"]) + a.question_tokens, mwe["harsh_check"]["classes"], 1),
        ("eval", list(mwe["eval_models"]), longlist * FINAL_SHARE * (n_lists + n_twins),
         count_tokens(mwe["eval"]["body"]) + a.question_tokens, mwe["classes"], n_lists + n_twins),
    ] + [
        (f"format_{name}", list(mwe["eval_models"]), longlist * FINAL_SHARE * n_format_lists,
         count_tokens(f.get("body") or mwe["eval"]["body"]) + count_tokens(f["template"]) + a.question_tokens,
         f["classes"], n_format_lists)
        for name, f in formats
    ]


def _mwe(cfg: dict, a: Assumptions) -> dict[str, float]:
    """GPU-seconds of study 1's hf models (API models cost dollars instead: :func:`api_cost`)."""
    mwe, out = cfg["mwe"], {}
    longlist = sum(p["n"] for p in mwe["longlist"]["prompts"])
    gen = mwe["longlist"]["generator"]
    if cfg["models"][gen]["backend"] == "hf":
        steps = math.ceil(longlist / mwe["longlist"]["batch_size"]) * mwe["longlist"]["sampling"]["max_tokens"]
        out["longlist"] = _load_s(a, _params(cfg, gen)) + steps * _step_s(a, _params(cfg, gen))
    neg = _negation_generator(mwe)
    if neg and cfg["models"][neg]["backend"] == "hf":
        steps = math.ceil(_negation_items(mwe) / mwe["negation"]["batch_size"]) * mwe["negation"]["sampling"]["max_tokens"]
        out["negation"] = _load_s(a, _params(cfg, neg)) + steps * _step_s(a, _params(cfg, neg))
    for stage, models, items, prompt, _, jobs in _scoring_stages(mwe, a):
        hf = [m for m in models if cfg["models"][m]["backend"] == "hf"]
        if hf:
            out[stage] = sum(jobs * _load_s(a, _params(cfg, m)) + items * prompt * 2 * _params(cfg, m) / a.flops
                             for m in hf)
    return out


def _usd(entry: dict, input_tokens: float, output_tokens: float) -> float:
    price = entry.get("price_per_1k") or {}
    return input_tokens / 1000 * price.get("input", 0.0) + output_tokens / 1000 * price.get("output", 0.0)


def _scoring_usd(entry: dict, items: float, prompt_tokens: float, classes: list[str]) -> float:
    """One scored item: the next-token request, and on a completions endpoint one echo request per class (the
    prompt with the class appended) where the server supports echo (assumed: the upper bound)."""
    requests = 1 + (len(classes) if entry.get("endpoint", "completions") == "completions" else 0)
    return _usd(entry, items * requests * (prompt_tokens + 2), items * requests)


def api_cost(cfg: dict, a: Assumptions) -> dict[str, float]:
    """Upper-bound dollars per stage for the models with ``price_per_1k``."""
    out: dict[str, float] = {}
    models = cfg["models"]
    mwe = cfg.get("mwe")
    if mwe:
        ll = mwe["longlist"]
        gen = models[ll["generator"]]
        out["longlist"] = sum(_usd(gen, p["n"] * count_tokens(p["text"]), p["n"] * ll["sampling"]["max_tokens"])
                              for p in ll["prompts"])
        neg = _negation_generator(mwe)
        if neg:
            n = _negation_items(mwe)
            out["negation"] = _usd(models[neg], n * (count_tokens(mwe["negation"]["prompt"]) + a.question_tokens),
                                   n * mwe["negation"]["sampling"]["max_tokens"])
        for stage, names, items, prompt, classes, _ in _scoring_stages(mwe, a):
            out[stage] = sum(_scoring_usd(models[m], items, prompt, classes) for m in names)
    dec = cfg.get("deception")
    if dec and dec["mrc"]["answerability"]["model"]:
        # one request per passage+question group: the original's MultiRC counts (train 24,029 + validation 3,214
        # rows, 86 % kept by the length filter, about 5 rows a group); the generator's otherwise (4 a group)
        groups = (27243 * 0.86 / 5 if dec["mrc"]["source"] != "synthetic"
                  else dec["mrc"]["synthetic_passages"] * 12 / 4)
        out["answerability"] = _scoring_usd(models[dec["mrc"]["answerability"]["model"]], groups, a.mrc_tokens + 80,
                                            [" Yes", " No"])
    return {k: v for k, v in out.items() if v > 0}


def estimate(cfg: dict, assumptions: Assumptions | None = None) -> dict[str, Any]:
    """{"gpu_hours": {"study.stage": hours}, "gpu_hours_total", "usd": {stage: dollars}, "usd_total"} for a
    validated config."""
    a = assumptions or Assumptions()
    seconds: dict[str, float] = {}
    if cfg.get("mwe"):
        seconds.update({f"mwe.{k}": v for k, v in _mwe(cfg, a).items()})
    if cfg.get("deception"):
        seconds.update({f"deception.{k}": v for k, v in _deception(cfg, a).items()})
    hours = {k: v / 3600 for k, v in seconds.items() if v > 0}
    usd = api_cost(cfg, a)
    return {"gpu_hours": hours, "gpu_hours_total": sum(hours.values()), "usd": usd, "usd_total": sum(usd.values())}


def render(result: dict[str, Any]) -> str:
    lines = [f"{'stage':<24} {'GPU-hours':>10}"]
    lines += [f"{k:<24} {v:>10.2f}" for k, v in result["gpu_hours"].items()]
    lines.append(f"{'total':<24} {result['gpu_hours_total']:>10.2f}")
    if result["usd"]:
        lines += ["", f"{'API stage':<24} {'USD (upper bound)':>18}"]
        lines += [f"{k:<24} {v:>18.2f}" for k, v in result["usd"].items()]
        lines.append(f"{'total':<24} {result['usd_total']:>18.2f}")
    return "\n".join(lines)


__all__ = ["Assumptions", "api_cost", "estimate", "render"]
