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


def longlist(out: str, stats_out: str | None, model: dict, cache: str, prompts: list, classes: list,
             sampling: dict, seed: int, batch_size: int, min_chars: int, max_chars: int) -> None:
    lm = _lm(model, cache, batch_size)
    items, stats = generate.build_longlist(lm, prompts, classes, sampling, seed, min_chars, max_chars)
    log.info(lm.cache.stats())
    write_jsonl(out, items)
    if stats_out:
        stats["cache"] = {"hits": lm.cache.hits, "calls": lm.cache.misses}
        write_text(stats_out, json.dumps(stats, indent=2))


def label_check(longlist_path: str, out: str, model: dict, cache: str, body: str, template: str,
                top_k: int, batch_size: int) -> None:
    items = read_jsonl(longlist_path)
    lm = _lm(model, cache, batch_size)
    write_jsonl(out, filters.label_check(lm, items, body, template, top_k) if items else [])


def shortlists(checked_path: str, out: str, out_strict: str, thresholds: dict[str, float]) -> None:
    short, strict = filters.shortlists(read_jsonl(checked_path), thresholds)
    write_jsonl(out, short)
    write_jsonl(out_strict, strict)


def harsh_check(shortlist_path: str, out: str, model: dict, cache: str, body: str, template: str,
                classes: list[str], keep: str, rule: str, top_k: int, batch_size: int) -> None:
    items = read_jsonl(shortlist_path)
    lm = _lm(model, cache, batch_size)
    write_jsonl(out, filters.harsh_check(lm, items, body, template, classes, keep, top_k, rule) if items else [])


def evaluate_model(dataset: str, out: str, model: dict, cache: str, body: str, template: str,
                   top_k: int, batch_size: int) -> None:
    fmt, items = load_dataset(dataset)
    log.info("%s: %d items (%s format)", dataset, len(items), fmt)
    records = []
    if items:
        lm = _lm(model, cache, batch_size)
        records = evaluate(lm, items, body, template, top_k)
    write_jsonl(out, records)


def table(dataset: str, dataset_name: str, responses: dict[str, str], models: dict[str, dict],
          bootstrap: dict, out: str) -> None:
    df = score_table(dataset, responses, models, bootstrap, dataset_name=dataset_name)
    write_csv(out, df)
    log.info("\n%s", df.to_string(index=False))
