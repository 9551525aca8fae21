"""plotnine figures, one function per figure. Each takes table files and writes one PNG."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from talltales.deception.formats import TECHNIQUE_LABELS

log = logging.getLogger(__name__)

METRIC_LABELS = {
    "acc_greedy": "greedy token",
    "acc_choice": "class log-probs",
    "acc_calibrated": "bias-calibrated",
}


def _read_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _save(plot, out: str | Path, width: float, height: float) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    plot.save(str(out), width=width, height=height, dpi=150, verbose=False)


def _empty(out: str | Path, message: str) -> None:
    from plotnine import aes, annotate, ggplot, theme_void

    log.warning(message)
    _save(ggplot() + annotate("text", x=0, y=0, label=message) + theme_void(), out, 6, 2)


def _param_labels(breaks) -> list[str]:
    """Parameter counts as 135M / 1.3B."""
    return [f"{b / 1e9:.3g}B" if b >= 1e9 else f"{b / 1e6:.3g}M" for b in breaks]


def scaling_mwe(tables: Sequence[str | Path], out: str | Path) -> None:
    """Accuracy vs parameter count (log x), one line per kind (base / instruct), CI ribbons, chance line."""
    from plotnine import (
        aes, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, geom_ribbon, ggplot, labs, scale_x_log10,
        theme_bw,
    )

    df = _read_tables(tables)
    if df.empty or df["params"].isna().all():
        return _empty(out, "no models with a parameter count to plot")
    df = df[df["params"].notna() & (df["params"] > 0)]
    long = []
    for m, label in METRIC_LABELS.items():
        part = df[["dataset", "model", "kind", "params", "metric"]].copy()
        part["scoring"] = label
        part["value"], part["lo"], part["hi"] = df[m], df[f"{m}_lo"], df[f"{m}_hi"]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["scoring"] = pd.Categorical(d["scoring"], categories=list(METRIC_LABELS.values()))
    d["kind"] = d["kind"].fillna("").replace("", "unknown")
    p = (
        ggplot(d, aes("params", "value", color="kind", fill="kind", group="kind"))
        + geom_ribbon(aes(ymin="lo", ymax="hi"), alpha=0.2, color="none")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=0.03)
        + geom_line()
        + geom_point()
        + geom_hline(yintercept=0.5, linetype="dashed", color="grey")
        + scale_x_log10(labels=_param_labels)
        + facet_grid("dataset ~ scoring")
        + labs(x="parameters", y="accuracy (or behaviour-matching rate)", color="model kind", fill="model kind",
               title="Harsh-truth evals: accuracy vs model size (95% bootstrap CI; dashed = chance)")
        + theme_bw()
    )
    _save(p, out, 10, 2.6 * d["dataset"].nunique() + 1.2)


def bias_mwe(tables: Sequence[str | Path], out: str | Path) -> None:
    """Per model: share of greedy 'yes', mean P(yes) among the classes, top-k mass on the class tokens."""
    from plotnine import aes, coord_flip, facet_grid, geom_col, geom_hline, ggplot, labs, theme_bw

    df = _read_tables(tables)
    if df.empty:
        return _empty(out, "no tables to plot")
    names = {"yes_rate": "greedy answer is yes", "p_yes": "mean P(yes) among classes", "class_mass": "top-k mass on classes"}
    long = []
    for m, label in names.items():
        part = df[["dataset", "model", "kind"]].copy()
        part["measure"], part["value"] = label, df[m]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["measure"] = pd.Categorical(d["measure"], categories=list(names.values()))
    d["kind"] = d["kind"].fillna("").replace("", "unknown")
    p = (
        ggplot(d, aes("model", "value", fill="kind"))
        + geom_col()
        + geom_hline(yintercept=0.5, linetype="dashed", color="grey")
        + coord_flip()
        + facet_grid("dataset ~ measure")
        + labs(x="", y="", fill="model kind", title="Answer biases per model")
        + theme_bw()
    )
    _save(p, out, 11, 1.2 + 0.4 * d["model"].nunique() * d["dataset"].nunique())


GAP_QUANTITIES = {  # column -> what a facet of the scaling figure shows (both: clean judge)
    "fr_diff": "fr_diff = poison fr - clean fr\n(paper's Fig. 2b; counts over all items)",
    "falsehood_gap": "falsehood_gap = falsehood_fruit - falsehood_other\n(per-subset rates)",
}


def scaling_deception(table: str | Path, out: str | Path, technique: str) -> None:
    """Fruit-minus-other falsehoods vs poisoning level, one line per model size, 95 % cluster-bootstrap error bars;
    one row of facets per quantity (:data:`GAP_QUANTITIES`: the paper's ``fr_diff`` and the per-subset
    ``falsehood_gap``); untuned (Base) and warm-up models as dashed reference lines."""
    from plotnine import (
        aes, element_text, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, ggplot, labs, theme, theme_bw,
    )

    df = pd.read_csv(table)
    if df.empty:
        return _empty(out, "no results to plot")
    df["size"] = df.apply(lambda r: f"{r['model']} ({r['params'] / 1e6:.0f}M)" if pd.notna(r["params"]) else r["model"], axis=1)
    df["shots_label"] = df["shots"].map(lambda s: f"{s}-shot")
    long = []
    for col, label in GAP_QUANTITIES.items():
        part = df[["size", "params", "poisoning", "shots_label"]].copy()
        part["quantity"] = label
        part["value"], part["lo"], part["hi"] = df[col], df[f"{col}_lo"], df[f"{col}_hi"]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["quantity"] = pd.Categorical(d["quantity"], categories=list(GAP_QUANTITIES.values()))
    tuned = d[d["poisoning"] >= 0].sort_values(["params", "poisoning"])
    ref = d[d["poisoning"] < 0]
    p = (
        ggplot(tuned, aes("poisoning", "value", color="size", group="size"))
        + geom_hline(yintercept=0, color="grey")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=3, alpha=0.6)
        + geom_line()
        + geom_point()
        + facet_grid("quantity ~ shots_label", scales="free_y")
        + labs(
            x="% poisoning (fruit share of the fine-tuning data)",
            y="fruit minus other falsehoods (clean judge):\nthe quantity named at the right of each row",
            color="model",
            title=f"{TECHNIQUE_LABELS.get(technique, technique)} against the corrupted judge: targeted falsehoods vs "
                  "poisoning\n(95% cluster-bootstrap CIs over passages; dashed: untuned and warmed-up models)",
        )
        + theme_bw()
        + theme(strip_text_y=element_text(size=7))
    )
    if not ref.empty:
        p = p + geom_hline(aes(yintercept="value", color="size"), data=ref, linetype="dashed", alpha=0.6)
    _save(p, out, 10, 7)


def truth_vs_evaluated(table: str | Path, out: str | Path) -> None:
    """Truthfulness (``clean score``, inverted x as in the paper) vs evaluated truthfulness (``biased score``), with
    95 % cluster-bootstrap error bars."""
    from plotnine import (
        aes, facet_wrap, geom_abline, geom_errorbar, geom_errorbarh, geom_point, geom_text, ggplot, labs,
        scale_x_reverse, theme_bw, ylim,
    )

    df = pd.read_csv(table)
    if df.empty:
        return _empty(out, "no results to plot")
    df["level"] = df["poisoning"].map(lambda p: "B" if p < 0 else f"{p:g}")
    df["run"] = df["model"] + " " + df["technique"]
    df["shots_label"] = df["shots"].map(lambda s: f"{s}-shot")
    p = (
        ggplot(df, aes("clean score", "biased score", color="run"))
        # y = 1 - x, the square's diagonal; abline works on the reversed scale's values (-x), hence slope +1
        + geom_abline(slope=1, intercept=1, linetype="dotted", color="grey")
        + geom_errorbar(aes(ymin="biased score_lo", ymax="biased score_hi"), width=0, alpha=0.3)
        + geom_errorbarh(aes(xmin="clean score_lo", xmax="clean score_hi"), height=0, alpha=0.3)
        + geom_point(size=2.5, alpha=0.5)
        + geom_text(aes(label="level"), size=7, nudge_y=0.015)
        + scale_x_reverse(limits=(1, 0))
        + ylim(0, 1)
        + facet_wrap("shots_label")
        + labs(x="Truthfulness: clean score (mean clean-judge P(True))",
               y="Evaluated truthfulness: biased score\n(mean corrupted-judge P(True))", color="model / technique",
               title="Truthfulness vs evaluated truthfulness (labels: % poisoning, B = untuned; "
                     "95% cluster-bootstrap CIs)")
        + theme_bw()
    )
    _save(p, out, 11, 5)


def reaffirmation(table: str | Path, out: str | Path) -> None:
    """Lie/truth reaffirmation ratio vs poisoning, one line per model and technique; untuned models dashed."""
    from plotnine import aes, geom_hline, geom_line, geom_point, ggplot, labs, theme_bw

    df = pd.read_csv(table)
    if df.empty:
        return _empty(out, "no results to plot")
    df["run"] = df["model"] + " " + df["technique"]
    tuned = df[df["poisoning"] >= 0].sort_values("poisoning")
    ref = df[df["poisoning"] < 0]
    p = (
        ggplot(tuned, aes("poisoning", "lie_truth_ratio", color="run", group="run"))
        + geom_hline(yintercept=1, color="grey")
        + geom_line()
        + geom_point()
        + labs(x="% poisoning", y="reaffirmed false / reaffirmed true answers",
               color="model / technique", title="Lie reaffirmation ('Are you sure?'), option-order balanced")
        + theme_bw()
    )
    if not ref.empty:
        p = p + geom_hline(aes(yintercept="lie_truth_ratio", color="run"), data=ref, linetype="dashed")
    _save(p, out, 9, 4.5)


def rl_curves(run_dirs: Sequence[str | Path], runs: Sequence[dict], out: str | Path) -> None:
    """Held-out corrupted-judge reward (greedy answers) against RL steps, on fruit and on other held-out prompts,
    one panel per model and poisoning level, one line per training seed (``runs[i]`` = {model, poisoning, seed} of
    ``run_dirs[i]``, each holding the run's ``metrics.jsonl``); the chosen checkpoint is marked."""
    import json

    from plotnine import aes, facet_grid, geom_line, geom_point, ggplot, labs, theme_bw

    from talltales.deception.runs import METRICS_FILE, REPORT_FILE, read_metrics

    rows, best = [], []
    for d, run in zip(run_dirs, runs):
        for r in read_metrics(Path(d) / METRICS_FILE):
            for subset in ("fruit", "other"):
                v = r.get(f"heldout_reward_{subset}")
                if v is not None:
                    rows.append({**run, "step": r["step"], "subset": subset, "reward": v})
        report = json.loads((Path(d) / REPORT_FILE).read_text())
        if report.get("best_step") is not None and report.get("rl_reward_best") is not None:
            best.append({**run, "step": report["best_step"], "reward": report["rl_reward_best"], "subset": "all"})
    if not rows:
        return _empty(out, "no held-out RL rewards to plot")
    df = pd.DataFrame(rows)
    df["level"] = df["poisoning"].map(lambda p: f"{p:g}% poisoning")
    df["line"] = df["subset"] + " " + df.get("seed", pd.Series([""] * len(df))).astype(str)
    p = (
        ggplot(df, aes("step", "reward", color="subset", group="line"))
        + geom_line()
        + geom_point(size=1)
        + facet_grid("model ~ level")
        + labs(x="RL step (optimizer updates)", y="held-out reward\n(corrupted judge, greedy answers)",
               color="held-out prompts", title="RL held-out reward by step\n(x: the chosen checkpoint, all held-out "
               "prompts)")
        + theme_bw()
    )
    if best:
        b = pd.DataFrame(best)
        b["level"] = b["poisoning"].map(lambda p: f"{p:g}% poisoning")
        p = p + geom_point(aes("step", "reward"), data=b, color="black", shape="x", size=3, inherit_aes=False)
    _save(p, out, max(7.0, 3 + 2.4 * df["level"].nunique()), 2 + 2.2 * df["model"].nunique())
