"""The `talltales` command: entry points that do not need Snakemake."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _score(args) -> int:
    from .io import write_csv
    from .mwe.metrics import score_table

    models = {}
    if args.config:
        from .config import load_config

        models = load_config(args.config)["models"]
    paths = {Path(p).stem: p for p in args.responses}
    if len(paths) != len(args.responses):
        stems = [Path(p).stem for p in args.responses]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"--responses: model names come from file stems, and {dup} is given more than once")
    unknown = sorted(set(paths) - set(models))
    if unknown:
        why = "no --config given" if not args.config else f"not in the model registry of {args.config}"
        print(f"talltales: note: kind and params are left empty for {', '.join(unknown)} ({why}; give --config "
              "with the models' registry entries to fill them)", file=sys.stderr)
    table = score_table(args.dataset, paths, models, {"n": args.bootstrap, "seed": args.seed, "ci": 0.95})
    write_csv(args.out, table)
    cols = ["model", "n", "acc_greedy", "acc_choice", "acc_calibrated", "yes_rate", "n_missing"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _materialize(args) -> int:
    from .config import load_config, model_entry
    from .lm.embedded import materialize

    cfg = load_config(args.config)
    entry = model_entry(cfg, args.model)
    if not entry.get("embedded"):
        print(f"model {args.model!r} is not an embedded model (no 'embedded:' in its registry entry)", file=sys.stderr)
        return 2
    materialize(entry["embedded"], entry["path"])
    return 0


def _shrink(args) -> int:
    from .shrink import shrink_file

    base = None if args.base == "none" else args.base
    done = shrink_file(args.config, args.out, base=base)
    for name, to in done["replaced"].items():
        print(f"{name} -> {to}")
    print(f"wrote {done['path']}: snakemake -c2 --configfile {done['path']} all")
    return 0


def _estimate(args) -> int:
    from .config import load_merged, validate, without_file_checks
    from .estimate import Assumptions, estimate, render

    base = None if args.base == "none" else args.base
    with without_file_checks():
        cfg = validate(load_merged(args.config, base), source=args.config)
    a = Assumptions(flops=args.flops, decode_ms=args.decode_ms)
    print(render(estimate(cfg, a)))
    print(f"(assumptions: {a}; talltales/estimate.py says how)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talltales", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="tables from saved responses (one jsonl per model; model name = file stem)")
    s.add_argument("--dataset", required=True, help="dataset file (original or Anthropic format)")
    s.add_argument("--responses", required=True, nargs="+", help="responses jsonl files, one per model")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--config", help="config.yaml whose model registry gives kind and params")
    s.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_score)
    m = sub.add_parser("materialize", help="write the HF folder of an embedded model")
    m.add_argument("model")
    m.add_argument("--config", default="config.yaml")
    m.set_defaults(func=_materialize)
    k = sub.add_parser("shrink", help="write the laptop-sized twin of a config (embedded models, test sizes, no "
                                      "resource requests; the study's structure kept)")
    k.add_argument("config", help="a config file, e.g. configs/tall_tales_paper.yaml")
    k.add_argument("--out", required=True, help="where to write the twin (a complete config, for --configfile)")
    k.add_argument("--base", default="config.yaml",
                   help="the config CONFIG is merged over, as --configfile merges it (default config.yaml; 'none': "
                        "CONFIG is complete)")
    k.set_defaults(func=_shrink)
    e = sub.add_parser("estimate", help="GPU-hours per stage and API dollars of a config, from its models' sizes "
                                        "and its data sizes (an estimate: talltales/estimate.py says how)")
    e.add_argument("config")
    e.add_argument("--base", default="config.yaml", help="as for shrink")
    e.add_argument("--flops", type=float, default=1.2e14, help="sustained FLOP/s of one GPU (default: A100 at 40 %%)")
    e.add_argument("--decode-ms", type=float, default=30.0, help="floor of one generation step in ms")
    e.set_defaults(func=_estimate)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"talltales: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
