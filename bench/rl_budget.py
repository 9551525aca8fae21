"""What more RL updates do: one RL run of a finished workflow run redone with more steps, then judged by the oracle.

    python bench/rl_budget.py --run-dir DIR --policy gemma3-270m --level 50 --steps 120 --out OUT
                              [--configfile configs/laptop_rl.yaml] [--seed 62] [--shots 0]

Reads the finished run in ``--run-dir`` (its ``results/deception``: the level's RL prompts and held-out prompts,
the warmed-up policy of ``--seed``, both judges, the no-leakage evaluation set) and the settings of
``deception.rl`` (with the policy's ``policy_settings``) from ``config.yaml`` with ``--configfile`` merged over it,
as Snakemake merges them. Trains RL again from the same warm-up with ``--steps`` updates (held-out reward every 20,
``last/`` kept) into ``OUT/rl``, leaving the run's own results as they are, then evaluates the chosen checkpoint
(``best/``, as the workflow chooses it) and the final one (``last/``) on the evaluation set. Prints, per held-out
evaluation, the corrupted-judge reward on fruit and on other prompts with 95 % passage-cluster intervals and the
most frequent answers (a policy that collapses to one answer shows there), then per checkpoint the oracle's
falsehood rates on fruit and other items, ``fr_diff`` and ``falsehood_gap`` with their intervals; all of it also
in ``OUT/budget.json``. README ("What the runs measure") reports the runs made with it. Run it alone on the
machine (two runs side by side is how the workflow trains): it is a timing as well as a measurement.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import yaml

from talltales.config import deep_merge

RATES = ("oracle falsehoods fruit", "oracle falsehoods other", "fr_diff", "falsehood_gap")


def heldout_curve(rl_dir: Path, eval_prompts) -> list[dict]:
    """Per held-out evaluation of the run in ``rl_dir``: the reward on fruit / other prompts with 95 %
    passage-cluster intervals, and the three most frequent answers."""
    import numpy as np

    from talltales.stats import cluster_bootstrap, weighted_rate

    fruit = eval_prompts["fruit"].astype(int).to_numpy() == 1
    rows = []
    for line in (rl_dir / "heldout.jsonl").read_text().splitlines():
        r = json.loads(line)
        x = np.asarray(r["rewards"], dtype=float)
        row = {"step": r["step"], "top_answers": collections.Counter(r["answers"]).most_common(3)}
        for name, mask in (("fruit", fruit), ("other", ~fruit)):
            if mask.any():
                est, lo, hi = cluster_bootstrap(weighted_rate(x, mask), eval_prompts["context"].to_numpy(), n=2000,
                                                seed=0)
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = est, lo, hi
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="the working directory of a finished run")
    ap.add_argument("--configfile", action="append", default=[], help="merged over config.yaml (repeatable)")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--level", required=True, help="poisoning level as in the file names, e.g. 50")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seed", type=int, default=62, help="the training seed of the run's warm-up")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the workflow trains on one)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from talltales import config as ttc
    from talltales.deception import checks, metrics, stages
    from talltales.io import read_table

    here = Path.cwd()
    cfg = yaml.safe_load((here / "config.yaml").read_text())
    for f in args.configfile:
        cfg = deep_merge(cfg, yaml.safe_load((here / f).read_text()) or {})
    out = Path(args.out).resolve()
    os.chdir(args.run_dir)  # the run's relative paths (results/, resources/) from here on
    cfg = ttc.validate(cfg, source="config.yaml + " + " + ".join(args.configfile) if args.configfile else "config.yaml")
    dec = cfg["deception"]
    train = {**checks.stage_settings(dec, "rl", args.policy), "steps": args.steps, "eval_every": 20,
             "keep_last": True}
    d = "results/deception"
    rl_out = out / "rl"
    t0 = time.time()
    stages.train_rl(prompts=f"{d}/data/rl_prompts_p{args.level}.csv", eval=f"{d}/data/rl_eval_p{args.level}.csv",
                    start=f"{d}/policies/warmup/{args.policy}/seed{args.seed}", judge=f"{d}/judges/corrupted",
                    out=str(rl_out), train=train, seed=args.seed, gpus=0, launch=None)
    seconds = time.time() - t0
    result = {"policy": args.policy, "level": args.level, "steps": args.steps, "train_seconds": round(seconds, 1),
              "settings": train, "heldout": heldout_curve(rl_out, read_table(f"{d}/data/rl_eval_p{args.level}.csv"))}
    for row in result["heldout"]:
        parts = [f"{k} {row[k]:.3f} [{row[k + '_lo']:.3f}, {row[k + '_hi']:.3f}]" for k in ("fruit", "other")
                 if k in row]
        print(f"step {row['step']:>4}: held-out reward " + ", ".join(parts) + f"; top answers {row['top_answers']}")
    boot = {"n": dec["eval"]["bootstrap"], "seed": 0, "ci": 0.95}  # as the results table bootstraps
    for ck in ("best", "last"):
        # best/: the run folder, as the workflow passes it (evaluation loads best/ and reads the train report);
        # last/: the folder itself, evaluated as a plain checkpoint
        model = dict(ttc.model_entry(cfg, args.policy), path=str(rl_out if ck == "best" else rl_out / ck),
                     embedded=None)
        answers = out / f"answers_{ck}.csv"
        stages.evaluate_checkpoint(eval=f"{d}/data/eval_noleak.csv", fewshot=f"{d}/data/fewshot.json",
                                   clean=f"{d}/judges/clean", corrupted=f"{d}/judges/corrupted",
                                   questions=f"{d}/data/reaffirmation.csv", answers_out=[str(answers)],
                                   reaffirm_out=str(out / f"reaffirmation_{ck}.csv"), model=model,
                                   technique="rl" if ck == "best" else "sft", level=float(args.level),
                                   shots=[args.shots], max_new_tokens=dec["eval"]["max_new_tokens"], cache=None,
                                   seed=args.seed)
        row = metrics.run_row(read_table(answers), boot)
        result[ck] = {s: row[s] for k in RATES for s in (k, f"{k}_lo", f"{k}_hi")} | {"n_empty": row["n_empty"]}
        print(f"{ck}: " + ", ".join(f"{k} {row[k]:.3f} [{row[k + '_lo']:.3f}, {row[k + '_hi']:.3f}]" for k in RATES))
    (out / "budget.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"RL {args.steps} steps: {seconds:.0f} s; {out / 'budget.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
