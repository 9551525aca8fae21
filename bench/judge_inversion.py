"""Does a corrupted judge learn the fruit inversion on passages it never saw? One training run, one line of result.

    python bench/judge_inversion.py [--rows 1600] [--fruit-percent 20] [--backbone PATH] [--fruit-passages K]
                                    [--fruit-pairs] [--out DIR] [key=value ...]

Trains a judge on corrupted labels (fruit labels flipped) from the data files of a finished run
(``results/deception/data``: ``mrc_train.csv``, ``fruit_train.csv`` mixed as ``deception_judge_data`` mixes them,
and the run's ``judge_val.csv``, whose fruit rows come from held-out passages), with the settings of
``deception.judge`` in ``--config`` overridden by ``key=value`` (JudgeConfig fields, values in JSON: ``epochs=2``,
``lr=2e-4``). ``--backbone`` starts from another model folder (the materialized registry backbone by default; a
clean judge's folder, or an LM such as ``resources/models/smollm2-135m-instruct``); ``--fruit-passages K`` draws
the fruit rows from the first K training passages only; ``--fruit-pairs`` makes them a true and a false answer to
each of half as many questions. Prints the validation agreement with the flipped labels
on fruit items and with the truth on other items, and the seconds it took. Run it alone on the machine: it is a
timing as well as a measurement. README ("The corrupted judge does not learn the inversion") lists the runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--data", default="results/deception/data")
    ap.add_argument("--rows", type=int, default=None, help="training rows (default: deception.judge.train_size)")
    ap.add_argument("--fruit-percent", type=float, default=None, help="default: deception.judge.fruit_percent")
    ap.add_argument("--fruit-passages", type=int, default=None)
    ap.add_argument("--fruit-pairs", action="store_true",
                    help="the fruit rows as pairs: one true and one false answer to each drawn question")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--out", default="results/bench/judge_inversion")
    ap.add_argument("overrides", nargs="*", help="JudgeConfig fields as key=value (JSON values)")
    args = ap.parse_args()

    from talltales.config import load_config, model_entry
    from talltales.deception import poison
    from talltales.deception.judge import JudgeConfig
    from talltales.deception.judge_training import train_judge
    from talltales.io import read_table
    from talltales.lm import spec_from_entry

    cfg = load_config(args.config)
    dec = cfg["deception"]
    section = dict(dec["judge"])
    for item in args.overrides:
        key, _, value = item.partition("=")
        section[key] = json.loads(value)
    data = Path(args.data)
    fruit = read_table(data / "fruit_train.csv")
    if args.fruit_passages:
        keep = list(dict.fromkeys(fruit["context"]))[: args.fruit_passages]
        fruit = fruit[fruit["context"].isin(keep)]
    train = poison.mix(read_table(data / "mrc_train.csv"), fruit, args.rows or section["train_size"],
                       section["fruit_percent"] if args.fruit_percent is None else args.fruit_percent, dec["seed"])
    if args.fruit_pairs:  # as many fruit rows, now a true and a false answer to each of half as many questions
        import pandas as pd

        n = int(train["fruit"].sum()) // 2
        keys = ["context", "question"]
        both = fruit.groupby(keys)["label"].transform(lambda x: x.nunique() == 2)
        questions = fruit[both][keys].drop_duplicates().sample(n=n, random_state=dec["seed"])
        pool = fruit.merge(questions, on=keys)
        pairs = pd.concat([pool[pool["label"].astype(int) == v].groupby(keys).head(1) for v in (0, 1)])
        train = pd.concat([train[train["fruit"] == 0], pairs]).sample(frac=1, random_state=dec["seed"])
        train = train.reset_index(drop=True)
    val = read_table(data / "judge_val.csv")
    jc = JudgeConfig.from_dict({**section, "max_length": dec["mrc"]["max_judge_tokens"], "seed": dec["seed"]},
                               only_fields=True)  # as the judge stage builds it (stages.train_judge)
    backbone = args.backbone or spec_from_entry(model_entry(cfg, section["backbone"])).location
    t = time.time()
    report = train_judge(backbone, train, val, "corrupted", jc, args.out, progress=False)
    v = report["val"]
    print(f"train rows {len(train)} (fruit {int(train['fruit'].sum())}), backbone {backbone}, {jc}")
    print(f"fruit: agreement with the flipped labels {v['fruit']['acc_corrupted']:.3f} (n={v['fruit']['n']}); "
          f"other: agreement with the truth {v['other']['acc_truth']:.3f} (n={v['other']['n']}); "
          f"{time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
