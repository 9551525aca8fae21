"""Throughput of the library's scorer against a naive one-forward-per-item-and-class loop.

    python bench/score_throughput.py --dataset ../shared/reference/mwe/final_list2.json

Both run in this process on the same model (the embedded SmolLM2-135M-Instruct by default, materialized
if missing) with the study's eval prompt from the config; the script checks that they agree to 1e-3 on
every class log-prob and top-k log-prob, prints items/s of each, and ends with `speedup: <ratio>x`.
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
    args = ap.parse_args()

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

    lm.score_choices(prompts[:4], choices[:4], args.top_k)  # warm-up
    t0 = time.perf_counter()
    fast = lm.score_choices(prompts, choices, args.top_k)
    t_fast = time.perf_counter() - t0
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
    print(f"max |difference| of log-probs: {worst:.2e} (tolerance {args.tolerance})")
    print(f"naive loop : {len(items) / t_naive:8.2f} items/s ({t_naive:.1f} s)")
    print(f"library    : {len(items) / t_fast:8.2f} items/s ({t_fast:.1f} s)")
    print(f"speedup: {t_naive / t_fast:.1f}x")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
