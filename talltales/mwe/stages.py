"""Study 1 stages as plain functions of paths and parameters (one per Snakemake rule).

Each loads what it needs, calls the study code and writes its outputs atomically; the workflow scripts only
unpack the ``snakemake`` object into these calls, so every stage can also be run from Python directly.
"""

from __future__ import annotations

import json
import logging

from ..io import read_jsonl, write_csv, write_jsonl, write_text
from ..lm import lm_from_entry as _lm
from . import filters, generate
from .datasets import load_dataset
from .evaluate import evaluate
from .metrics import score_table

log = logging.getLogger(__name__)


def _log_list(what: str, items: list[dict], of: int | None = None) -> None:
    """A list's size (of how many it was made from) and each answer's share of its labels."""
    counts: dict[str, int] = {}
    for it in items:
        label = it["classes"][it["answer_index"]].strip()
        counts[label] = counts.get(label, 0) + 1
    shares = ", ".join(f"{k} {v} ({v / len(items):.0%})" for k, v in sorted(counts.items())) if items else "empty"
    log.info("%s: %d items%s; labels: %s", what, len(items), f" of {of}" if of is not None else "", shares)


def longlist(out: str, stats_out: str | None, model: dict, cache: str, prompts: list, classes: list,
             sampling: dict, seed: int, batch_size: int, min_chars: int, max_chars: int) -> None:
    lm = _lm(model, cache, batch_size)
    items, stats = generate.build_longlist(lm, prompts, classes, sampling, seed, min_chars, max_chars)
    log.info(lm.cache.stats())
    _log_list("longlist", items)
    write_jsonl(out, items)
    if stats_out:
        stats["cache"] = {"hits": lm.cache.hits, "calls": lm.cache.misses}
        write_text(stats_out, json.dumps(stats, indent=2))


def label_check(longlist_path: str, out: str, model: dict, cache: str, body: str, template: str,
                top_k: int, batch_size: int) -> None:
    items = read_jsonl(longlist_path)
    lm = _lm(model, cache, batch_size)
    checked = filters.label_check(lm, items, body, template, top_k) if items else []
    agree = sum(r["label_check"]["greedy"] == r["classes"][r["answer_index"]] for r in checked)
    log.info("label check by %s: the checker's greedy answer is the label on %d of %d items", model["name"], agree,
             len(checked))
    write_jsonl(out, checked)


def shortlists(checked_path: str, out: str, out_strict: str, thresholds: dict[str, float]) -> None:
    checked = read_jsonl(checked_path)
    short, strict = filters.shortlists(checked, thresholds)
    _log_list("shortlist", short, len(checked))
    _log_list("strict shortlist", strict, len(checked))
    write_jsonl(out, short)
    write_jsonl(out_strict, strict)


def harsh_check(shortlist_path: str, out: str, model: dict, cache: str, body: str, template: str,
                classes: list[str], keep: str, rule: str, top_k: int, batch_size: int, balance: bool = True,
                balance_seed: int = 0) -> None:
    """The harsh check, then (``balance``) the labels down-sampled to equal counts (:func:`filters.balance_labels`,
    seeded by ``balance_seed``); both counts are logged."""
    items = read_jsonl(shortlist_path)
    lm = _lm(model, cache, batch_size)
    kept = filters.harsh_check(lm, items, body, template, classes, keep, top_k, rule) if items else []
    _log_list(f"harsh check by {model['name']} (rule {rule}): kept", kept, len(items))
    if balance:
        kept, before, after = filters.balance_labels(kept, balance_seed)
        if len(before) < 2:
            log.warning("label balance: the list has %s; nothing to balance against, kept as it is",
                        f"only the label {next(iter(before))!r}" if before else "no items")
        else:
            log.info("label balance (seed %d): %s -> %s", balance_seed, before, after)
        _log_list("final list, label-balanced", kept)
    write_jsonl(out, kept)


def evaluate_model(dataset: str, out: str, model: dict, cache: str, body: str, template: str,
                   top_k: int, batch_size: int) -> None:
    fmt, items = load_dataset(dataset)
    log.info("%s: %d items (%s format)", dataset, len(items), fmt)
    records = []
    if items:
        lm = _lm(model, cache, batch_size)
        records = evaluate(lm, items, body, template, top_k)
        measured = [(it, {c: v for c, v in r["class_logprobs"].items() if v is not None}) for it, r in
                    zip(items, records)]
        right = sum(it.classes.index(max(lp, key=lp.get)) in it.targets for it, lp in measured if lp)
        n = sum(1 for _, lp in measured if lp)
        log.info("%s on %s: the more likely class is correct on %d of %d items with a class log-prob (%s; %d "
                 "without)", model["name"], dataset, right, n, f"{right / n:.3f}" if n else "n/a", len(items) - n)
    write_jsonl(out, records)


def table(dataset: str, dataset_name: str, responses: dict[str, str], models: dict[str, dict],
          bootstrap: dict, out: str) -> None:
    df = score_table(dataset, responses, models, bootstrap, dataset_name=dataset_name)
    write_csv(out, df)
    log.info("\n%s", df.to_string(index=False))
