"""The judge-validity figure (plotnine): each judge's agreement with the oracle on the policies' own answers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..plots import _empty, _save


def _run_label(row) -> str:
    level = "" if row["poisoning"] < 0 else f" {row['poisoning']:g}%"
    return f"{row['technique']}{level}"


def judge_validity(table: str | Path, out: str | Path) -> None:
    """Agreement with the oracle (95 % CI) per run, one colour per judge, one panel per subset (columns) and
    model x shots (rows); the dashed line marks 0.5. Runs without an oracle (n = 0) are left out."""
    from plotnine import (
        aes, coord_flip, facet_grid, geom_errorbar, geom_hline, geom_point, ggplot, labs, position_dodge, theme_bw,
        ylim,
    )

    df = pd.read_csv(table)
    if not df.empty:
        df = df[df["n"] > 0]
    if df.empty:
        return _empty(out, "no answers with an oracle (the source has none): nothing to plot")
    df = df.sort_values(["technique", "poisoning"])
    df["run"] = df.apply(_run_label, axis=1)
    df["run"] = pd.Categorical(df["run"], categories=list(dict.fromkeys(df["run"]))[::-1])
    df["panel"] = df["model"] + ", " + df["shots"].map(lambda s: f"{s}-shot")
    df["subset"] = pd.Categorical(df["subset"], categories=["fruit", "other", "all"])
    dodge = position_dodge(width=0.5)
    p = (
        ggplot(df, aes("run", "agreement", color="judge"))
        + geom_hline(yintercept=0.5, linetype="dashed", color="grey")
        + geom_errorbar(aes(ymin="agreement_lo", ymax="agreement_hi"), width=0.3, position=dodge)
        + geom_point(position=dodge)
        + ylim(0, 1)
        + coord_flip()
        + facet_grid("panel ~ subset")
        + labs(x="", y="agreement with the oracle (judge P(True) > 0.5 vs oracle class 'true'; empty = not true)",
               color="judge", title="Judge validity on the policies' own answers (95% bootstrap CI; dashed = 0.5)")
        + theme_bw()
    )
    _save(p, out, 11, 1.5 + 0.35 * df["run"].nunique() * df["panel"].nunique())


__all__ = ["judge_validity"]
