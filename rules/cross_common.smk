# The two studies joined (talltales/cross.py), its names and input functions (its rules: rules/cross.smk): every study-2 checkpoint answers study 1's lists (cross.datasets)
# with study 1's eval prompt; the table and figure say whether training against a judge corrupted on fruit moves
# harsh-truth answers (each poisoned checkpoint against the same policy, technique and seed at level 0).

CROSS_DATASETS = list(config["cross"]["datasets"])
CROSS_RESPONSES = "results/cross/responses/{dataset}/{policy}/{technique}/seed{seed}/{run}.jsonl"
CROSS_BASE_RESPONSES = "results/cross/responses/{dataset}/{policy}/base/untuned.jsonl"
CROSS_TABLE = "results/cross/tables/harsh_truth.csv"
CROSS_PLOT = "results/plots/cross_study.png"
ALL_TARGETS += [CROSS_TABLE, CROSS_PLOT]


def cross_runs():
    """(run description, responses file) of every checkpoint on every list of cross.datasets."""
    out = []
    for d in CROSS_DATASETS:
        for p in POLICIES:
            out.append(({"dataset": d, "policy": p, "technique": "base", "seed": None, "poisoning": None},
                        CROSS_BASE_RESPONSES.format(dataset=d, policy=p)))
        for t in ("warmup", "sft", "rl"):
            for p in TRAINED_WITH[t]:
                for s in SEEDS:
                    for run in ["untuned"] if t == "warmup" else RUNS:
                        level = None if run == "untuned" else float(run[1:])
                        out.append(({"dataset": d, "policy": p, "technique": t, "seed": int(s), "poisoning": level},
                                    CROSS_RESPONSES.format(dataset=d, policy=p, technique=t, seed=s, run=run)))
    return out


def cross_entry(wildcards):
    """The registry entry of the checkpoint a cross_eval job scores: study 2's eval_entry, an RL run's chosen
    checkpoint being its best/ folder (the one study 2 evaluates, talltales/deception/rl.py)."""
    entry = eval_entry(wildcards)
    if wildcards.technique == "rl":
        entry["path"] = f"{entry['path']}/best"
    return entry
