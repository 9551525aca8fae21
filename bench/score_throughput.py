"""Throughput of the library's scorer against a naive one-forward-per-item-and-class loop (and, on request,
EleutherAI's lm-evaluation-harness).

    python bench/score_throughput.py --dataset ../shared/reference/mwe/final_list2.json
    python bench/score_throughput.py --dataset ../shared/reference/mwe/final_list2.json --vs lm-eval

Both run in this process on the same model (the embedded SmolLM2-135M-Instruct by default, materialized
if missing) with the study's eval prompt from the config; the script checks that they agree to 1e-3 on
every class log-prob and top-k log-prob, prints items/s of each, and ends with `speedup: <ratio>x`.

`--vs lm-eval` (needs the `bench` extra: `pip install -e '.[bench]'`, i.e. `lm_eval==0.4.13`) also loads the
same model folder into lm-eval's `hf` backend (`lm_eval.models.huggingface.HFLM`, same device, dtype and batch
size) and scores the same prompts with one `loglikelihood` request per item and class (context = the prompt as
the model sees it, continuation = the class string, e.g. " Yes"). It checks that lm-eval's log-probs agree with
the library's `class_logprobs` to the tolerance on every item and class, prints the largest difference and
lm-eval's items/s, and ends with `vs lm-eval: <ratio>x` (library speed / lm-eval speed). Both sides are warmed
up before anything is timed; then the library and lm-eval take turns on chunks of `--chunk` items (64; each
side's time is the sum over its chunks), so that load from other processes falls on both alike; then the
naive loop runs (`--skip-naive` leaves it out: it is the slow part). Exit status 1 when any check fails, 2 when `--vs lm-eval`
is asked for without lm_eval installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="dataset file (original or Anthropic format)")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="registry name (default: %(default)s)")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N items")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--vs", choices=["lm-eval"], default=None,
                    help="also time EleutherAI lm-evaluation-harness's hf backend on the same model and prompts")
    ap.add_argument("--chunk", type=int, default=64,
                    help="with --vs: time the library and lm-eval alternately on chunks of this many items "
                         "(0: each on the whole list at once; default %(default)s)")
    ap.add_argument("--skip-naive", action="store_true",
                    help="leave out the naive loop (its check and the speedup line), e.g. with --vs lm-eval")
    args = ap.parse_args()

    lm_eval_api = None
    if args.vs == "lm-eval":
        try:
            from lm_eval.api.instance import Instance
            from lm_eval.models.huggingface import HFLM as LMEvalHFLM
        except ImportError as e:
            print(f"--vs lm-eval needs EleutherAI's lm-evaluation-harness: install the bench extra "
                  f"(pip install -e '.[bench]', i.e. lm_eval==0.4.13); import failed: {e}", file=sys.stderr)
            return 2
        lm_eval_api = (Instance, LMEvalHFLM)

    from talltales.config import load_config, model_entry
    from talltales.lm import spec_from_entry
    from talltales.io import fill
    from talltales.lm.embedded import materialize
    from talltales.lm.hf import HFLM, naive_score_choices
    from talltales.mwe.datasets import load_dataset

    cfg = load_config(args.config)
    entry = model_entry(cfg, args.model)
    if entry.get("embedded") and not Path(entry["path"]).exists():
        print(f"materializing {args.model} -> {entry['path']}", flush=True)
        materialize(entry["embedded"], entry["path"])
    _, items = load_dataset(args.dataset)
    items = items[: args.limit] if args.limit else items
    ev = cfg["mwe"]["eval"]
    prompts = [fill(ev["template"], body=ev["body"], prompt=it.prompt) for it in items]
    choices = [it.classes for it in items]
    lm = HFLM(spec_from_entry(entry), batch_size=args.batch_size, progress=False)
    print(f"model {args.model} on {lm.device} ({lm.dtype}), torch threads {torch.get_num_threads()}, "
          f"{len(items)} items x {len(choices[0])} classes, prompt body {len(lm.tok(ev['body'])['input_ids'])} tokens")

    le, requests = None, []
    if lm_eval_api is not None:
        Instance, LMEvalHFLM = lm_eval_api
        # same folder, device, dtype and batch size; lm-eval loads its own copy of the model and tokenizer
        le = LMEvalHFLM(pretrained=str(lm.spec.location), device=str(lm.device), dtype=lm.dtype,
                        batch_size=args.batch_size)
        requests = lm_eval_requests(Instance, lm, prompts, choices)

    lm.score_choices(prompts[:4], choices[:4], args.top_k)  # warm-up
    if le is not None:
        le.loglikelihood(requests[: sum(len(cs) for cs in choices[:4])], disable_tqdm=True)  # warm-up
    if le is None:
        t0 = time.perf_counter()
        fast = lm.score_choices(prompts, choices, args.top_k)
        t_fast = time.perf_counter() - t0
    else:
        # alternate the two in chunks of items so that both see the same load from anything else on the machine
        fast, flat, t_fast, t_le = [], [], 0.0, 0.0
        step = args.chunk or len(items)
        first = [0]  # index of each item's first request
        for cs in choices:
            first.append(first[-1] + len(cs))
        for a in range(0, len(items), step):
            b = min(a + step, len(items))
            t0 = time.perf_counter()
            fast += lm.score_choices(prompts[a:b], choices[a:b], args.top_k)
            t_fast += time.perf_counter() - t0
            t0 = time.perf_counter()
            flat += [ll for ll, _greedy in le.loglikelihood(requests[first[a] : first[b]], disable_tqdm=True)]
            t_le += time.perf_counter() - t0
    ok = True
    if not args.skip_naive:
        t0 = time.perf_counter()
        naive = naive_score_choices(lm, prompts, choices, args.top_k)
        t_naive = time.perf_counter() - t0
        worst = 0.0
        for f, n in zip(fast, naive):
            if f.text != n.text or set(f.top_logprobs) != set(n.top_logprobs):
                if max(abs(a - b) for a, b in zip(sorted(f.top_logprobs.values()), sorted(n.top_logprobs.values()))) > args.tolerance:
                    print(f"top-k tokens differ: {f.top_logprobs} vs {n.top_logprobs}")
                    return 1
            for c in f.class_logprobs:
                worst = max(worst, abs(f.class_logprobs[c] - n.class_logprobs[c]))
            for tok, v in f.top_logprobs.items():
                if tok in n.top_logprobs:
                    worst = max(worst, abs(v - n.top_logprobs[tok]))
        ok = worst <= args.tolerance
        print(f"max |difference| of log-probs: {worst:.2e} (tolerance {args.tolerance})")
        print(f"naive loop : {len(items) / t_naive:8.2f} items/s ({t_naive:.1f} s)")
    print(f"library    : {len(items) / t_fast:8.2f} items/s ({t_fast:.1f} s)")
    if not args.skip_naive:
        print(f"speedup: {t_naive / t_fast:.1f}x")
    if le is not None:
        diff, where, split_differs = compare_lm_eval(lm, le, prompts, choices, fast, flat)
        print(f"max |difference| vs lm-eval: {diff:.2e} (tolerance {args.tolerance}, {len(flat)} requests)")
        if split_differs:
            print(f"lm-eval tokenized {split_differs} of {len(flat)} (context, continuation) pairs differently "
                  f"from the library")
        if diff > args.tolerance:
            i, c, theirs, ours = where
            print(f"largest difference: item {i}, class {c!r}: lm-eval {theirs:.5f}, library {ours:.5f}")
            ok = False
        print(f"lm-eval hf : {len(items) / t_le:8.2f} items/s ({t_le:.1f} s)")
        print(f"vs lm-eval: {t_le / t_fast:.2f}x")
    return 0 if ok else 1


def lm_eval_requests(Instance, lm, prompts, choices) -> list:
    """lm-eval ``loglikelihood`` requests, one per (item, class) in item order: the context is the prompt as
    the library feeds it to the model (its chat template, if the entry has one), the continuation the class."""
    return [Instance(request_type="loglikelihood", doc={}, arguments=(lm.format_prompt(p), c), idx=0)
            for p, cs in zip(prompts, choices) for c in cs]


def compare_lm_eval(lm, le, prompts, choices, fast, flat) -> tuple[float, tuple | None, int]:
    """lm-eval's log-probs ``flat`` (one per request of :func:`lm_eval_requests`) against the library's
    ``class_logprobs`` in ``fast``: the largest |difference|, where it is (item, class, lm-eval, library), and
    how many (context, continuation) pairs lm-eval tokenized differently from the library (its own split:
    trailing spaces of the context move to the continuation)."""
    worst, where, split_differs, k = 0.0, None, 0, 0
    for i, (p, cs, f) in enumerate(zip(prompts, choices, fast)):
        for c, r in zip(cs, lm._rows(p, cs)):
            ctx_ids, cont_ids = le._encode_pair(lm.format_prompt(p), c)
            if list(ctx_ids) + list(cont_ids) != list(r.ids) or len(cont_ids) != len(r.ids) - r.start:
                split_differs += 1
            d = abs(flat[k] - f.class_logprobs[c])
            if where is None or d > worst:
                worst, where = d, (i, c, flat[k], f.class_logprobs[c])
            k += 1
    return worst, where, split_differs


if __name__ == "__main__":
    sys.exit(main())
