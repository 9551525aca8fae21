"""Tables from saved responses (backs the `talltales score` command and the table rule).

Per model and dataset:
* acc_greedy: the greedy token equals a correct class (the original study's metric);
* acc_choice: the class with the highest log-prob is correct. Class log-probs come from the full-continuation
  scores when the response has them, else from the top-k list; a class absent from both is *missing*
  (never scored as 0). Items where no class could be measured are left out of acc_choice and counted in
  n_missing, which counts items with any class missing;
* acc_calibrated: argmax after subtracting each class's mean log-prob over the dataset, i.e. removing the
  model's average preference for one answer (for yes/no: its yes-bias);
* top_outside: the share of items whose top next token (the greedy answer) is none of the item's classes (e.g. a
  newline where the classes are " Yes"/" No");
* yes_rate (greedy answer is "yes"), p_yes (mean P(yes) normalized over the classes), class_mass (mean
  top-k probability mass on the class tokens), with percentile-bootstrap CIs for the accuracies;
* the dataset's own balance, the same in every model's row: label_yes_share (share of items whose correct class
  is "yes", the reference for yes_rate) and majority_baseline (the accuracy of always giving the most common
  correct class, the reference for the accuracies).
* acc_negation (with a file of negated twins, :mod:`talltales.mwe.negation`): over the item pairs (an item and
  its twin, whose correct class is the other one), the share where the correct class's log-odds (its log-prob
  minus the other class's), averaged over the question and its negation, is positive (a tie counts half). A
  constant preference for one class adds to one log-odds what it takes from the other, so it cancels; CIs
  resample pairs; n_pairs counts the pairs with both measured.
For Anthropic-format datasets "correct" means "matches the behaviour" and the same columns hold the
behaviour-matching rate (column `metric` says which).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import read_jsonl
from ..stats import bootstrap_ci, mean_or_nan
from .datasets import Item, load_dataset, metric_name


class ResponseError(ValueError):
    pass


def _top(rec: dict) -> dict[str, float]:
    lp = rec.get("logprobs") or {}
    tops = lp.get("top_logprobs") or []
    return dict(tops[0]) if tops and tops[0] else {}


def class_logprob_matrix(items: list[Item], records: list[dict]) -> np.ndarray:
    """items x max_classes array of class log-probs (NaN = missing or no such class)."""
    k = max((len(it.classes) for it in items), default=0)
    out = np.full((len(items), k), np.nan)
    for i, (it, rec) in enumerate(zip(items, records)):
        full = rec.get("class_logprobs") or {}
        top = _top(rec)
        for j, c in enumerate(it.classes):
            v = full.get(c)
            if v is None:
                v = top.get(c)
            if v is not None:
                out[i, j] = v
    return out


def _is_yes(text: str) -> bool:
    return text.strip().strip(".").lower() == "yes"


def model_row(items: list[Item], records: list[dict], boot: dict[str, Any],
              per_item: dict[str, np.ndarray] | None = None, yes_class: str | None = None) -> dict[str, Any]:
    """One model's row of the table; ``per_item`` (a dict), when given, receives each accuracy's per-item values
    (1 correct, 0 wrong, NaN unmeasured) under its column name, for paired comparisons; ``yes_class``: the class
    that p_yes measures where it is not a "yes" (an answer format's option letter)."""
    n = len(items)
    targets = [set(it.targets) for it in items]
    greedy = np.array([float(rec.get("text") in {it.classes[t] for t in it.targets}) for it, rec in zip(items, records)])
    lp = class_logprob_matrix(items, records)
    n_classes = np.array([len(it.classes) for it in items])
    valid = np.zeros_like(lp, dtype=bool)
    for i, m in enumerate(n_classes):
        valid[i, :m] = True
    measured = ~np.isnan(lp) & valid
    any_measured = measured.any(axis=1)
    all_measured = (measured | ~valid).all(axis=1)

    def choice_correct(mat: np.ndarray) -> np.ndarray:
        res = np.full(len(mat), np.nan)
        for i in range(len(mat)):
            if any_measured[i]:
                row = np.where(measured[i], mat[i], -np.inf)
                res[i] = float(int(np.argmax(row)) in targets[i])
        return res

    choice = choice_correct(lp)

    def calibrated_acc() -> np.ndarray:
        with warnings.catch_warnings():  # a class never measured on a complete row: "Mean of empty slice"
            warnings.simplefilter("ignore", RuntimeWarning)
            offset = np.nanmean(np.where(all_measured[:, None], lp, np.nan), axis=0)
        offset = np.nan_to_num(offset)
        res = np.full(len(lp), np.nan)
        for i in range(len(lp)):
            if all_measured[i]:
                row = np.where(valid[i], lp[i] - offset, -np.inf)
                res[i] = float(int(np.argmax(row)) in targets[i])
        return res

    calibrated = calibrated_acc()
    if per_item is not None:
        per_item.update(acc_greedy=greedy, acc_choice=choice, acc_calibrated=calibrated)
    is_yes = (lambda c: c == yes_class) if yes_class is not None else _is_yes
    yes_idx = [next((j for j, c in enumerate(it.classes) if is_yes(c)), None) for it in items]
    has_yes = any(j is not None for j in yes_idx)
    yes_rate = float(np.mean([_is_yes(rec.get("text") or "") for rec in records])) if has_yes and n else float("nan")
    p_yes = []
    mass = []
    for i, (it, rec) in enumerate(zip(items, records)):
        if yes_idx[i] is not None and all_measured[i]:
            row = lp[i, : len(it.classes)]
            p = np.exp(row - np.max(row))
            p_yes.append(p[yes_idx[i]] / p.sum())
        top = _top(rec)
        mass.append(sum(math.exp(top[c]) for c in set(it.classes) if c in top) if top else float("nan"))
    nb, seed, ci = boot["n"], boot["seed"], boot["ci"]
    row: dict[str, Any] = {"n": n}
    for name, vals in (("acc_greedy", greedy), ("acc_choice", choice), ("acc_calibrated", calibrated)):
        row[name] = mean_or_nan(vals)
        lo, hi = bootstrap_ci(vals, n=nb, ci=ci, seed=seed)
        row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
    # the dataset's own label balance: the share of items whose correct class is "yes", and the accuracy of a
    # model that always gives the most common correct class (the baseline a figure reads accuracy against)
    label_yes = [float(any(_is_yes(it.classes[t]) for t in it.targets)) for it, j in zip(items, yes_idx)
                 if j is not None]
    class_shares: dict[str, float] = {}
    for it in items:
        for c in {it.classes[t].strip() for t in it.targets}:
            class_shares[c] = class_shares.get(c, 0.0) + 1.0 / len(items)
    row.update(
        label_yes_share=mean_or_nan(label_yes) if label_yes else float("nan"),
        majority_baseline=max(class_shares.values()) if class_shares else float("nan"),
        yes_rate=yes_rate,
        p_yes=mean_or_nan(p_yes) if p_yes else float("nan"),
        class_mass=mean_or_nan(mass),
        top_outside=mean_or_nan([float(rec.get("text") not in it.classes) for it, rec in zip(items, records)
                                 if not rec.get("skipped")]),
        n_missing=int((~all_measured).sum()),
        n_unscored=int((~any_measured).sum()),
    )
    return row


def load_responses(path: str | Path, n_items: int) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ResponseError(f"{path}: responses file not found")
    recs = read_jsonl(path)
    if len(recs) != n_items:
        raise ResponseError(f"{path}: has {len(recs)} responses but the dataset has {n_items} items (one per item, in order)")
    for lineno, rec in enumerate(recs, 1):
        if "text" not in rec:
            raise ResponseError(f"{path}:{lineno}: a response needs at least 'text' (an OpenAI completions choice)")
        if "item" in rec and rec["item"] != lineno - 1:
            raise ResponseError(f"{path}:{lineno}: response for item {rec['item']} out of dataset order")
    return recs


def bootstrap_settings(bootstrap: dict[str, Any] | None) -> dict[str, Any]:
    """mwe.bootstrap with the schema's defaults for keys it leaves out (callers outside the workflow pass none)."""
    return {"n": 2000, "seed": 0, "ci": 0.95, **(bootstrap or {})}


def in_format(items: list[Item], classes: list[str], format_classes: list[str]) -> list[Item | None]:
    """The items under an answer format: each class of mwe.classes replaced by the format's class at its position
    (None for an item with a class outside mwe.classes: the format does not apply to it)."""
    mapping = dict(zip(classes, format_classes))
    return [Item(it.prompt, [mapping[c] for c in it.classes], list(it.targets), it.meta)
            if all(c in mapping for c in it.classes) else None for it in items]


FORMAT_COLUMNS = ["dataset", "metric", "model", "kind", "params", "format", "n", "n_scored",
                  "acc_choice", "acc_choice_lo", "acc_choice_hi", "acc_greedy", "acc_greedy_lo", "acc_greedy_hi",
                  "acc_calibrated", "acc_calibrated_lo", "acc_calibrated_hi", "class_mass", "top_outside", "p_yes"]


def format_table(datasets: dict[str, str | Path], formats: dict[str, list[str]], classes: list[str],
                 responses: dict[tuple[str, str, str], str | Path], models: dict[str, dict[str, Any]],
                 bootstrap: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per dataset, model and answer format (``formats``: NAME -> its classes, positional to
    ``classes``); ``responses``: (dataset, format, model) -> responses jsonl (a record per item, in order).
    ``p_yes`` is the mean probability of the format's class that stands for "yes" (option (A) or (B))."""
    boot = bootstrap_settings(bootstrap)
    yes = next((j for j, c in enumerate(classes) if _is_yes(c)), None)
    rows = []
    for ds, path in datasets.items():
        fmt, items = load_dataset(path)
        for name, fclasses in formats.items():
            yes_class = fclasses[yes] if yes is not None and yes < len(fclasses) else None
            mapped = in_format(items, classes, fclasses)
            keep = [i for i, it in enumerate(mapped) if it is not None]
            for model, info in models.items():
                recs = load_responses(responses[(ds, name, model)], len(items))
                row = {"dataset": ds, "metric": metric_name(fmt), "model": model, "kind": info.get("kind", ""),
                       "params": info.get("params"), "format": name, "n": len(items), "n_scored": len(keep)}
                if keep:
                    its, rs = [mapped[i] for i in keep], [recs[i] for i in keep]
                    row.update(model_row(its, rs, boot, yes_class=yes_class))
                    row["n"] = len(items)
                    if yes_class is None:  # the study's classes have no "yes" for p_yes to measure
                        row["p_yes"] = float("nan")
                rows.append(row)
    return pd.DataFrame(rows, columns=FORMAT_COLUMNS)


def correct_log_odds(items: list[Item], records: list[dict]) -> np.ndarray:
    """Per two-class item with one correct class: log P(correct) - log P(other) (NaN when not measured)."""
    lp = class_logprob_matrix(items, records)
    out = np.full(len(items), np.nan)
    for i, it in enumerate(items):
        if len(it.classes) == 2 and len(it.targets) == 1:
            t = it.targets[0]
            out[i] = lp[i, t] - lp[i, 1 - t]
    return out


def negation_scores(items: list[Item], records: list[dict], twins: list[Item], twin_records: list[dict]) -> np.ndarray:
    """Per twin (pair): 1 when the mean of the correct-class log-odds of the item and of its twin is positive, 0
    when negative, 0.5 on a tie, NaN when either is unmeasured."""
    own = correct_log_odds(items, records)
    neg = correct_log_odds(twins, twin_records)
    out = np.full(len(twins), np.nan)
    for k, tw in enumerate(twins):
        n = tw.meta.get("source_item")
        if not isinstance(n, int) or not 0 <= n < len(items):
            raise ResponseError(f"twin {k}: 'source_item' {n!r} is not an item of the dataset")
        mean = (own[n] + neg[k]) / 2
        if not np.isnan(mean):
            out[k] = 0.5 if mean == 0 else float(mean > 0)
    return out


COLUMNS = [
    "dataset", "metric", "model", "kind", "params", "n",
    "acc_greedy", "acc_greedy_lo", "acc_greedy_hi",
    "acc_choice", "acc_choice_lo", "acc_choice_hi",
    "acc_calibrated", "acc_calibrated_lo", "acc_calibrated_hi",
    "acc_negation", "acc_negation_lo", "acc_negation_hi", "n_pairs",
    "label_yes_share", "majority_baseline",
    "yes_rate", "p_yes", "class_mass", "top_outside", "n_missing", "n_unscored",
]


def score_table(
    dataset_path: str | Path,
    response_paths: dict[str, str | Path],
    models: dict[str, dict[str, Any]] | None = None,
    bootstrap: dict[str, Any] | None = None,
    dataset_name: str | None = None,
    twins: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per model. ``response_paths``: model name -> responses jsonl; ``models``: model name -> its
    registry entry (for the ``kind`` and ``params`` columns; a model without one gets neither); ``twins``:
    {"dataset": negated twins file, "responses": {model: responses jsonl on it}} fills the acc_negation columns."""
    fmt, items = load_dataset(dataset_path)
    boot = bootstrap_settings(bootstrap)
    models = models or {}
    twin_items = load_dataset(twins["dataset"])[1] if twins else None
    rows = []
    for model, path in response_paths.items():
        recs = load_responses(path, len(items))
        info = models.get(model, {})
        row = {
            "dataset": dataset_name or Path(dataset_path).stem,
            "metric": metric_name(fmt),
            "model": model,
            "kind": info.get("kind", ""),
            "params": info.get("params", None),
        }
        row.update(model_row(items, recs, boot) if items else {"n": 0})
        if twins:
            if model not in twins["responses"]:
                raise ResponseError(f"{twins['dataset']}: no responses of {model} on the negated twins")
            twin_recs = load_responses(twins["responses"][model], len(twin_items))
            vals = negation_scores(items, recs, twin_items, twin_recs)
            row["acc_negation"] = mean_or_nan(vals)
            row["acc_negation_lo"], row["acc_negation_hi"] = bootstrap_ci(vals, n=boot["n"], ci=boot["ci"],
                                                                          seed=boot["seed"])
            row["n_pairs"] = int((~np.isnan(vals)).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
