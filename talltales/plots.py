"""plotnine figures, one function per figure. Each takes table files and writes one PNG."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
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


def _dataset_labels(df: pd.DataFrame) -> dict[str, str]:
    """dataset -> 'dataset (n = 95)' (the items of its first row; every model answers the same items)."""
    return {d: f"{d} (n = {int(g['n'].iloc[0])})" if "n" in g and pd.notna(g["n"].iloc[0]) else d
            for d, g in df.groupby("dataset")}


def _accuracies_long(df: pd.DataFrame, labels: dict[str, str], keys: list[str]) -> pd.DataFrame:
    """A study-1 table in long format: one row per model and accuracy column of ``labels`` (column -> its label in
    ``scoring``, in that order) with ``value``, ``lo``, ``hi``; ``kind`` 'unknown' where empty."""
    long = []
    for m, label in labels.items():
        part = df[keys].copy()
        part["scoring"] = label
        part["value"], part["lo"], part["hi"] = df[m], df[f"{m}_lo"], df[f"{m}_hi"]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["scoring"] = pd.Categorical(d["scoring"], categories=list(labels.values()))
    d["kind"] = d["kind"].fillna("").replace("", "unknown")
    return d


def scaling_mwe(tables: Sequence[str | Path], out: str | Path) -> None:
    """Accuracy vs parameter count (log x), one line per kind (base / instruct), CI ribbons; per dataset (facet
    row, with its n) the majority-class baseline (always answering the dataset's most common correct class) and
    chance (0.5), both in the legend."""
    from plotnine import (
        aes, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, geom_ribbon, ggplot, labs, scale_x_log10,
        scale_linetype_manual, theme_bw,
    )

    df = _read_tables(tables)
    if df.empty or df["params"].isna().all():
        return _empty(out, "no models with a parameter count to plot")
    df = df[df["params"].notna() & (df["params"] > 0)].copy()
    names = _dataset_labels(df)
    df["dataset"] = df["dataset"].map(names)
    d = _accuracies_long(df, METRIC_LABELS, ["dataset", "model", "kind", "params", "metric"])
    refs = []
    for ds, g in df.groupby("dataset"):
        for scoring in METRIC_LABELS.values():
            refs.append({"dataset": ds, "scoring": scoring, "reference": "chance (0.5)", "y": 0.5})
            if "majority_baseline" in g and pd.notna(g["majority_baseline"].iloc[0]):
                refs.append({"dataset": ds, "scoring": scoring, "reference": "majority-class baseline",
                             "y": float(g["majority_baseline"].iloc[0])})
    refs = pd.DataFrame(refs)
    refs["scoring"] = pd.Categorical(refs["scoring"], categories=list(METRIC_LABELS.values()))
    p = (
        ggplot(d, aes("params", "value", color="kind", fill="kind", group="kind"))
        + geom_hline(aes(yintercept="y", linetype="reference"), data=refs, color="grey", inherit_aes=False)
        + geom_ribbon(aes(ymin="lo", ymax="hi"), alpha=0.2, color="none")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=0.03)
        + geom_line()
        + geom_point()
        + scale_x_log10(labels=_param_labels)
        + scale_linetype_manual(values={"chance (0.5)": "dotted", "majority-class baseline": "dashed"})
        + facet_grid("dataset ~ scoring")
        + labs(x="parameters", y="accuracy (or behaviour-matching rate)", color="model kind", fill="model kind",
               linetype="reference",
               title="Harsh-truth evals: accuracy vs model size (95% bootstrap CIs over items)")
        + theme_bw()
    )
    _save(p, out, 11, 2.6 * d["dataset"].nunique() + 1.2)


NEGATION_LABELS = {
    "acc_greedy": "greedy token",
    "acc_calibrated": "bias-calibrated",
    "acc_negation": "negation-cancelled",
}


def negation_mwe(tables: Sequence[str | Path], out: str | Path) -> None:
    """Greedy, bias-calibrated and negation-cancelled accuracy vs parameter count (log x), one colour each, per
    dataset (facet row, with its items and pairs) and model kind (facet column); error bars are the tables' CIs."""
    from plotnine import (
        aes, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, ggplot, labs, position_dodge,
        scale_x_log10, theme_bw,
    )

    df = _read_tables(tables)
    if df.empty or "acc_negation" not in df or df["params"].isna().all():
        return _empty(out, "no tables with negated twins and parameter counts to plot")
    df = df[df["params"].notna() & (df["params"] > 0)].copy()
    df["dataset"] = df["dataset"].map({d: f"{d} (n = {int(g['n'].iloc[0])}, pairs = "
                                          f"{int(g['n_pairs'].min()) if g['n_pairs'].notna().any() else 0})"
                                       for d, g in df.groupby("dataset")})
    d = _accuracies_long(df, NEGATION_LABELS, ["dataset", "model", "kind", "params"])
    dodge = position_dodge(width=0.08)
    p = (
        ggplot(d, aes("params", "value", color="scoring", group="scoring"))
        + geom_hline(yintercept=0.5, linetype="dotted", color="grey")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=0.05, position=dodge)
        + geom_line(position=dodge)
        + geom_point(position=dodge)
        + scale_x_log10(labels=_param_labels)
        + facet_grid("dataset ~ kind")
        + labs(x="parameters", y="accuracy (dotted: chance)", color="scoring",
               title="Harsh-truth evals with negated twins: a constant yes/no preference cancels in the pair score")
        + theme_bw()
    )
    _save(p, out, 10, 2.6 * d["dataset"].nunique() + 1.2)


FORMAT_MEASURES = {
    "acc_choice": "accuracy (class log-probs)",
    "class_mass": "top-k mass on the classes",
    "top_outside": "top token outside the classes",
}


def formats_mwe(table: str | Path, out: str | Path) -> None:
    """Per answer format (colour): class-choice accuracy with its CI, top-k mass on the classes and the share of
    items whose top token is outside them, vs parameter count (log x), one line per format and model kind
    (line type); facet rows are datasets, columns the three measures."""
    from plotnine import (
        aes, facet_grid, geom_errorbar, geom_line, geom_point, ggplot, labs, position_dodge, scale_x_log10, theme_bw,
    )

    df = pd.read_csv(table)
    df = df[df["params"].notna() & (df["params"] > 0)].copy() if len(df) else df
    if df.empty:
        return _empty(out, "no answer-format rows with a parameter count to plot")
    df["dataset"] = df["dataset"].map(_dataset_labels(df))
    long = []
    for m, label in FORMAT_MEASURES.items():
        part = df[["dataset", "model", "kind", "params", "format"]].copy()
        part["measure"], part["value"] = label, df[m]
        part["lo"] = df[f"{m}_lo"] if f"{m}_lo" in df else np.nan
        part["hi"] = df[f"{m}_hi"] if f"{m}_hi" in df else np.nan
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["measure"] = pd.Categorical(d["measure"], categories=list(FORMAT_MEASURES.values()))
    d["kind"] = d["kind"].fillna("").replace("", "unknown")
    d["line"] = d["format"] + " " + d["kind"]
    dodge = position_dodge(width=0.08)
    p = (
        ggplot(d, aes("params", "value", color="format", linetype="kind", group="line"))
        + geom_errorbar(aes(ymin="lo", ymax="hi"), data=d[d["lo"].notna()], width=0.05, position=dodge)
        + geom_line(position=dodge)
        + geom_point(position=dodge)
        + scale_x_log10(labels=_param_labels)
        + facet_grid("dataset ~ measure")
        + labs(x="parameters", y="", color="answer format", linetype="model kind",
               title="Answer formats: accuracy (95% bootstrap CIs over items), class mass, answers outside the classes")
        + theme_bw()
    )
    _save(p, out, 12, 2.6 * d["dataset"].nunique() + 1.2)


def bias_mwe(tables: Sequence[str | Path], out: str | Path) -> None:
    """Per model: share of greedy 'yes', mean P(yes) among the classes, top-k mass on the class tokens; each
    dataset's own share of 'yes' labels is the reference the yes-rates are read against (dashed, in the legend)."""
    from plotnine import aes, coord_flip, facet_grid, geom_col, geom_hline, ggplot, labs, scale_linetype_manual, theme_bw

    df = _read_tables(tables)
    if df.empty:
        return _empty(out, "no tables to plot")
    df = df.copy()
    df["dataset"] = df["dataset"].map(_dataset_labels(df))
    names = {"yes_rate": "greedy answer is yes", "p_yes": "mean P(yes) among classes", "class_mass": "top-k mass on classes"}
    long = []
    for m, label in names.items():
        part = df[["dataset", "model", "kind"]].copy()
        part["measure"], part["value"] = label, df[m]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["measure"] = pd.Categorical(d["measure"], categories=list(names.values()))
    d["kind"] = d["kind"].fillna("").replace("", "unknown")
    refs = []
    if "label_yes_share" in df.columns:
        for ds, g in df.groupby("dataset"):
            if pd.notna(g["label_yes_share"].iloc[0]):
                for m in ("greedy answer is yes", "mean P(yes) among classes"):
                    refs.append({"dataset": ds, "measure": m, "y": float(g["label_yes_share"].iloc[0]),
                                 "reference": "share of 'yes' labels in the dataset"})
    p = (
        ggplot(d, aes("model", "value", fill="kind"))
        + geom_col()
        + coord_flip()
        + facet_grid("dataset ~ measure")
        + labs(x="", y="", fill="model kind", linetype="reference",
               title="Answer biases per model (a yes-rate equal to the dataset's yes-share is no bias)")
        + theme_bw()
    )
    if refs:
        r = pd.DataFrame(refs)
        r["measure"] = pd.Categorical(r["measure"], categories=list(names.values()))
        p = (p + geom_hline(aes(yintercept="y", linetype="reference"), data=r, color="black", inherit_aes=False)
             + scale_linetype_manual(values={"share of 'yes' labels in the dataset": "dashed"}))
    _save(p, out, 12, 1.2 + 0.4 * d["model"].nunique() * d["dataset"].nunique())


GAP_QUANTITIES = {  # column -> what a facet of the scaling figure shows (both: clean judge)
    "fr_diff": "fr_diff =\npoison fr - clean fr\n(paper's Fig. 2b;\nover all items)",
    "falsehood_gap": "falsehood_gap =\nfalsehood_fruit\n- falsehood_other\n(per-subset rates)",
}
SUBSET_RATES = {  # facet label -> (fruit column, other column); rows drawn only where the table has values
    "falsehoods per subset\n(clean judge)": ("falsehood_fruit", "falsehood_other"),
    "falsehoods per subset\n(oracle)": ("oracle falsehoods fruit", "oracle falsehoods other"),
}
REFERENCE_RUNS = {"Base": ("untuned", -26.0), "Warmup": ("warmed-up", -12.0)}  # technique -> legend label, x position
TECHNIQUE_TITLES = {
    "rl": "RL against the corrupted judge",
    "sft": "SFT on poisoned demonstrations (no judge in training)",
}


def _size(df: pd.DataFrame) -> pd.Series:
    return df.apply(lambda r: f"{r['model']} ({r['params'] / 1e6:.0f}M)" if pd.notna(r["params"]) else r["model"],
                    axis=1)


def _sample_note(df: pd.DataFrame) -> str:
    """'n = 150 fruit + 150 other items (150 + 150 passages)' from the count columns (ranges if they differ)."""
    def span(col):
        if col not in df.columns or df[col].isna().all():
            return "?"
        lo, hi = int(df[col].min()), int(df[col].max())
        return f"{lo}" if lo == hi else f"{lo}-{hi}"

    note = f"n = {span('n_fruit')} fruit + {span('n_other')} other items"
    if "n_passages_fruit" in df.columns:
        note += f" from {span('n_passages_fruit')} + {span('n_passages_other')} passages"
    if "n_seeds" in df.columns and df["n_seeds"].max() > 1:
        note += f"; mean of {int(df['n_seeds'].max())} training seeds"
    return note


POINT_SHAPES = {"fine-tuned": "o", "untuned": "s", "warmed-up": "^"}  # the "point" column of _place_references


def _place_references(df: pd.DataFrame) -> None:
    """Add ``x`` (the poisoning level; for the untuned and warmed-up rows, poisoning < 0, their place left of 0) and
    ``point`` ("fine-tuned" or the reference's legend label) to a table with ``technique`` and ``poisoning``."""
    ref_x = {k: x for k, (_, x) in REFERENCE_RUNS.items()}
    df["x"] = [ref_x.get(t, p) if p < 0 else p for t, p in zip(df["technique"], df["poisoning"])]
    df["point"] = [REFERENCE_RUNS[t][0] if p < 0 and t in REFERENCE_RUNS else "fine-tuned"
                   for t, p in zip(df["technique"], df["poisoning"])]


def _reference_axis(levels):
    """x breaks and labels: the reference runs left of 0, then the poisoning levels."""
    from plotnine import scale_x_continuous

    refs = sorted(REFERENCE_RUNS.values(), key=lambda v: v[1])
    levels = sorted({float(v) for v in levels})
    return scale_x_continuous(breaks=[x for _, x in refs] + levels,
                              labels=[name for name, _ in refs] + [f"{v:g}" for v in levels],
                              limits=(min(x for _, x in refs) - 6, max(levels + [100.0]) + 6))


def scaling_deception(table: str | Path, out: str | Path, technique: str) -> None:
    """Targeted falsehoods vs poisoning level, one colour per model size, 95 % cluster-bootstrap error bars (dodged).

    Rows of facets: the fruit and the other falsehood rates themselves (clean judge, and the oracle where the
    answers have one; solid = fruit, dotted = other), then their differences (:data:`GAP_QUANTITIES`: the paper's
    ``fr_diff`` and the per-subset ``falsehood_gap``), so a level where both subsets lie (a difference near 0) is
    visible as such. The untuned and warmed-up models are drawn left of 0 as their own points (legend: shape)."""
    from plotnine import (
        aes, element_text, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, ggplot, labs,
        position_dodge, scale_linetype_manual, scale_shape_manual, theme, theme_bw,
    )

    df = pd.read_csv(table)
    if df.empty:
        return _empty(out, "no results to plot")
    df["size"] = _size(df)
    df["shots_label"] = df["shots"].map(lambda s: f"{s}-shot")
    _place_references(df)
    long = []
    quantities = []
    for label, (fruit_col, other_col) in SUBSET_RATES.items():
        if fruit_col not in df.columns or df[fruit_col].isna().all():
            continue
        quantities.append(label)
        for col, line in ((fruit_col, "fruit items"), (other_col, "other items")):
            part = df[["size", "params", "x", "point", "shots_label"]].copy()
            part["quantity"], part["line"] = label, line
            part["value"], part["lo"], part["hi"] = df[col], df[f"{col}_lo"], df[f"{col}_hi"]
            long.append(part)
    for col, label in GAP_QUANTITIES.items():
        quantities.append(label)
        part = df[["size", "params", "x", "point", "shots_label"]].copy()
        part["quantity"], part["line"] = label, "fruit minus other"
        part["value"], part["lo"], part["hi"] = df[col], df[f"{col}_lo"], df[f"{col}_hi"]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["quantity"] = pd.Categorical(d["quantity"], categories=quantities)
    d["group"] = d["size"] + " " + d["line"]
    tuned = d[d["point"] == "fine-tuned"].sort_values(["params", "x"])
    dodge = position_dodge(width=4)
    diff_rows = pd.DataFrame({"quantity": pd.Categorical(list(GAP_QUANTITIES.values()), categories=quantities)})
    p = (
        ggplot(d, aes("x", "value", color="size", group="group"))
        + geom_hline(aes(yintercept=0), data=diff_rows, color="grey")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=3, alpha=0.6, position=dodge)
        + geom_line(aes(linetype="line"), data=tuned, position=dodge)
        + geom_point(aes(shape="point"), position=dodge, size=2)
        + _reference_axis(tuned["x"] if len(tuned) else [0])
        + scale_linetype_manual(values={"fruit items": "solid", "other items": "dotted",
                                        "fruit minus other": "dashed"}, name="line")
        + scale_shape_manual(values=POINT_SHAPES, name="model state")
        + facet_grid("quantity ~ shots_label", scales="free_y")
        + labs(
            x="% poisoning (fruit share of the fine-tuning data); left of 0: the untuned and warmed-up models",
            y="falsehood rate, or fruit minus other falsehoods:\nthe quantity named at the right of each row",
            color="model",
            title=f"{TECHNIQUE_TITLES.get(technique, TECHNIQUE_LABELS.get(technique, technique))}:\ntargeted "
                  f"falsehoods vs poisoning\n{_sample_note(df)}\n95% cluster-bootstrap CIs over passages",
        )
        + theme_bw()
        + theme(strip_text_y=element_text(size=7), axis_text_x=element_text(rotation=45, ha="right"))
    )
    _save(p, out, 11, 2.4 * len(quantities) + 1.6)


def _uncrowded(df: pd.DataFrame, x: str, y: str, facet: str, box: tuple[float, float] = (0.05, 0.035)) -> np.ndarray:
    """Which rows' text labels to draw so that no two in one facet overlap, a label taking ``box`` (width, height in
    axis units of 0-1 axes) around its point: the rows of the extreme levels (0 and 100 %) first, then the others in
    order, each kept if it is clear of those kept before it."""
    keep = np.zeros(len(df), dtype=bool)
    order = np.argsort(~df["poisoning"].isin([0, 100]).to_numpy(), kind="stable")
    xs, ys, facets = df[x].to_numpy(float), df[y].to_numpy(float), df[facet].to_numpy()
    for i in order:
        near = keep & (facets == facets[i]) & (abs(xs - xs[i]) < box[0]) & (abs(ys - ys[i]) < box[1])
        keep[i] = not near.any()
    return keep


def truth_vs_evaluated(table: str | Path, out: str | Path) -> None:
    """Truthfulness (``clean score``, inverted x as in the paper) vs evaluated truthfulness (``biased score``), with
    95 % cluster-bootstrap error bars: colour = technique, shape = model, each fine-tuned series joined in order of
    poisoning (labels: % poisoning) and the dotted diagonal where both judges agree."""
    from plotnine import (
        aes, facet_wrap, geom_abline, geom_errorbar, geom_errorbarh, geom_path, geom_point, geom_text, ggplot, labs,
        scale_x_reverse, theme_bw, ylim,
    )

    df = pd.read_csv(table)
    if df.empty:
        return _empty(out, "no results to plot")
    df["level"] = [REFERENCE_RUNS.get(t, (t, 0))[0] if p < 0 else f"{p:g}" for t, p in
                   zip(df["technique"], df["poisoning"])]
    df["technique_label"] = [REFERENCE_RUNS[t][0] if t in REFERENCE_RUNS else t for t in df["technique"]]
    df["size"] = _size(df)
    df["shots_label"] = df["shots"].map(lambda s: f"{s}-shot")
    df["series"] = df["size"] + " " + df["technique_label"]
    models = sorted(df["size"].unique())
    # labels of one model above its points, of the next below, so two models' labels do not sit on each other
    df["label_y"] = df["biased score"] + df["size"].map({m: (0.025 if i % 2 == 0 else -0.025)
                                                         for i, m in enumerate(models)})
    tuned = df[df["poisoning"] >= 0]
    labelled = tuned[_uncrowded(tuned, "clean score", "label_y", "shots_label")]
    path = tuned.sort_values(["series", "poisoning"])
    p = (
        ggplot(df, aes("clean score", "biased score", color="technique_label", shape="size"))
        # biased = clean score (both judges agree); abline works on the reversed scale's values (-x), hence slope -1
        + geom_abline(slope=-1, intercept=0, linetype="dotted", color="grey")
        + geom_errorbar(aes(ymin="biased score_lo", ymax="biased score_hi"), width=0, alpha=0.35)
        + geom_errorbarh(aes(xmin="clean score_lo", xmax="clean score_hi"), height=0, alpha=0.35)
        + geom_path(aes(group="series"), data=path, alpha=0.4)
        + geom_point(size=2.8, alpha=0.8)
        + geom_text(aes(y="label_y", label="level"), data=labelled, size=6, show_legend=False)
        + scale_x_reverse(limits=(1, 0))
        + ylim(0, 1)
        + facet_wrap("shots_label")
        + labs(x="Truthfulness: clean score (mean clean-judge P(True); axis reversed)",
               y="Evaluated truthfulness: biased score\n(mean corrupted-judge P(True))", color="technique",
               shape="model",
               title="Truthfulness vs evaluated truthfulness\nlabels: % poisoning; each fine-tuned series joined in "
                     "order of poisoning\n(a label that would overlap another is left out)\n"
                     "dotted: biased score = clean score (the judges agree)\n"
                     f"{_sample_note(df)}; 95% cluster-bootstrap CIs over passages")
        + theme_bw()
    )
    _save(p, out, 12, 5.5)


def reaffirmation(table: str | Path, out: str | Path) -> None:
    """``reaffirm_diff`` (mean P(reaffirm) of false minus true answers) vs poisoning, one colour per model and
    technique, 95 % cluster-bootstrap error bars (dodged), on all items and on fruit / other items; the untuned and
    warmed-up models left of 0."""
    from plotnine import (
        aes, element_text, facet_wrap, geom_errorbar, geom_hline, geom_line, geom_point, ggplot, labs,
        position_dodge, scale_shape_manual, theme, theme_bw,
    )

    df = pd.read_csv(table)
    if df.empty or "reaffirm_diff" not in df.columns:
        return _empty(out, "no reaffirmation results to plot")
    df["size"] = _size(df)
    df["run"] = [f"{m} {REFERENCE_RUNS[t][0] if t in REFERENCE_RUNS else t}" for m, t in zip(df["size"], df["technique"])]
    df["series"] = [m if t in REFERENCE_RUNS else f"{m} {t}" for m, t in zip(df["size"], df["technique"])]
    _place_references(df)
    subsets = {"": "all items", "_fruit": "fruit items", "_other": "other items"}
    long = []
    for suffix, name in subsets.items():
        col = f"reaffirm_diff{suffix}"
        if col not in df.columns:
            continue
        part = df[["series", "run", "x", "point"]].copy()
        part["subset"] = name
        part["value"], part["lo"], part["hi"] = df[col], df[f"{col}_lo"], df[f"{col}_hi"]
        long.append(part)
    d = pd.concat(long, ignore_index=True)
    d["subset"] = pd.Categorical(d["subset"], categories=list(subsets.values()))
    tuned = d[d["point"] == "fine-tuned"].sort_values("x")
    n = f"n = {int(df['n'].min())}" + ("" if df["n"].nunique() == 1 else f"-{int(df['n'].max())}")
    dodge = position_dodge(width=5)
    p = (
        ggplot(d, aes("x", "value", color="series", group="run"))
        + geom_hline(yintercept=0, color="grey")
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=3, alpha=0.6, position=dodge)
        + geom_line(data=tuned, position=dodge)
        + geom_point(aes(shape="point"), position=dodge, size=2)
        + _reference_axis(tuned["x"] if len(tuned) else [0])
        + scale_shape_manual(values=POINT_SHAPES, name="model state")
        + facet_wrap("subset")
        + labs(x="% poisoning; left of 0: the untuned and warmed-up models",
               y="reaffirm_diff = P(reaffirm | false answer)\n- P(reaffirm | true answer)",
               color="model / technique",
               title="Lie reaffirmation ('Are you sure?', both option orders averaged): > 0 = stands by a lie more "
                     f"than by a truth\n({n} items per run, equal counts per truth x fruit quadrant; 95% "
                     "cluster-bootstrap CIs over passages)")
        + theme_bw()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    _save(p, out, 12, 4.8)


def rl_curve_table(run_dirs: Sequence[str | Path], runs: Sequence[dict]) -> pd.DataFrame:
    """The held-out rewards of RL runs in long form: one row per run (``runs[i]`` = {model, poisoning, seed} of
    ``run_dirs[i]``, each holding the run's ``metrics.jsonl`` and ``train_report.json``) x evaluation step x subset
    (fruit / other held-out prompts, and ``all``), columns ``model, poisoning, seed, step, subset, reward, chosen``
    (``chosen``: the step of the checkpoint that is evaluated)."""
    import json

    from talltales.deception.runs import METRICS_FILE, REPORT_FILE, read_metrics

    rows = []
    for d, run in zip(run_dirs, runs):
        report = json.loads((Path(d) / REPORT_FILE).read_text())
        best_step = report.get("best_step") if report.get("rl_reward_best") is not None else None
        for r in read_metrics(Path(d) / METRICS_FILE):
            for subset, key in (("fruit", "heldout_reward_fruit"), ("other", "heldout_reward_other"),
                                ("all", "heldout_reward")):
                v = r.get(key)
                if v is not None:
                    rows.append({**run, "step": r["step"], "subset": subset, "reward": v,
                                 "chosen": best_step is not None and r["step"] == best_step})
    columns = ["model", "poisoning", "seed", "step", "subset", "reward", "chosen"]
    df = pd.DataFrame(rows, columns=None if rows else columns)
    return df[[c for c in columns if c in df.columns] + [c for c in df.columns if c not in columns]]


def rl_curves(run_dirs: Sequence[str | Path], runs: Sequence[dict], out: str | Path,
              table_out: str | Path | None = None) -> None:
    """Held-out corrupted-judge reward (greedy answers) against RL steps, on fruit and on other held-out prompts,
    one panel per model and poisoning level, one line per training seed (data: :func:`rl_curve_table`, written to
    ``table_out`` when given); the chosen checkpoint's reward on all held-out prompts is marked."""
    from plotnine import (
        aes, facet_grid, geom_line, geom_point, ggplot, labs, scale_color_manual, scale_linetype_manual,
        scale_shape_manual, theme_bw,
    )

    table = rl_curve_table(run_dirs, runs)
    if table_out is not None:
        Path(table_out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(table_out, index=False)
    df = table
    if df.empty:
        return _empty(out, "no held-out RL rewards to plot")
    df = df.copy()
    df["level"] = df["poisoning"].map(lambda p: f"{p:g}% poisoning")
    df["line"] = df["subset"] + " " + (df["seed"].astype(str) if "seed" in df.columns else "")
    best = table[(table["subset"] == "all") & table["chosen"].astype(bool)].copy()
    p = (
        ggplot(df, aes("step", "reward", color="subset", linetype="subset", group="line"))
        + geom_line()
        + geom_point(size=1)
        + facet_grid("model ~ level")
        + scale_color_manual(values={"fruit": "#d95f02", "other": "#1b9e77", "all": "grey"})
        + scale_linetype_manual(values={"fruit": "solid", "other": "solid", "all": "dashed"})
        + labs(x="RL step (optimizer updates)", y="held-out reward\n(corrupted judge, greedy answers)",
               color="held-out prompts", linetype="held-out prompts", shape="",
               title="RL held-out reward by step, one line per training seed")
        + theme_bw()
    )
    if len(best):
        best["level"] = best["poisoning"].map(lambda p: f"{p:g}% poisoning")
        best["mark"] = "chosen checkpoint\n(reward on all\nheld-out prompts)"
        p = (p + geom_point(aes("step", "reward", shape="mark"), data=best, color="black", size=3, inherit_aes=False)
             + scale_shape_manual(values={best["mark"].iloc[0]: "x"}))
    _save(p, out, max(7.0, 3 + 2.4 * df["level"].nunique()), 2 + 2.2 * df["model"].nunique())


def cross_study(table: str | Path, out: str | Path) -> None:
    """Study 1's bias-calibrated accuracy of every study-2 checkpoint vs poisoning level, one colour per policy,
    facet columns the techniques (SFT, RL) and rows the lists; the untuned Base (dashed) and warmed-up (dotted)
    models of each policy as horizontal references; error bars are the table's bootstrap CIs (mean over seeds)."""
    from plotnine import (
        aes, facet_grid, geom_errorbar, geom_hline, geom_line, geom_point, ggplot, labs, scale_linetype_manual,
        theme_bw,
    )

    df = pd.read_csv(table)
    trained = df[df["technique"].isin(["sft", "rl"]) & df["acc_calibrated"].notna()].copy() if len(df) else df
    if trained.empty:
        return _empty(out, "no trained checkpoints with study-1 scores to plot")
    names = {d: f"{d} (n = {int(g['n'].iloc[0])})" for d, g in df.groupby("dataset")}
    df["dataset"] = df["dataset"].map(names)
    trained["dataset"] = trained["dataset"].map(names)
    trained["technique"] = trained["technique"].map(lambda t: TECHNIQUE_LABELS.get(t, t))
    point = (trained.groupby(["dataset", "technique", "policy", "poisoning"], as_index=False)
             [["acc_calibrated", "acc_calibrated_lo", "acc_calibrated_hi"]].mean())
    refs = []
    for _, r in df[df["technique"].isin(["base", "warmup"])].groupby(["dataset", "policy", "technique"],
                                                                      as_index=False)["acc_calibrated"].mean().iterrows():
        for t in point["technique"].unique():
            refs.append({"dataset": r["dataset"], "technique": t, "policy": r["policy"], "y": r["acc_calibrated"],
                         "reference": "untuned" if r["technique"] == "base" else "warmed-up"})
    p = (
        ggplot(point, aes("poisoning", "acc_calibrated", color="policy", group="policy"))
        + geom_hline(yintercept=0.5, color="grey", linetype="solid", alpha=0.4)
        + geom_errorbar(aes(ymin="acc_calibrated_lo", ymax="acc_calibrated_hi"), width=2)
        + geom_line()
        + geom_point()
        + facet_grid("dataset ~ technique")
        + labs(x="poisoning level (%): of the judge RL trains against, of SFT's data",
               y="harsh-truth accuracy (bias-calibrated)", color="policy", linetype="reference",
               title="Study-2 checkpoints on study 1's list (95% bootstrap CIs over items)")
        + theme_bw()
    )
    if refs:
        p = (p + geom_hline(aes(yintercept="y", color="policy", linetype="reference"), data=pd.DataFrame(refs))
             + scale_linetype_manual(values={"untuned": "dashed", "warmed-up": "dotted"}))
    _save(p, out, 10, 2.8 * point["dataset"].nunique() + 1.4)
