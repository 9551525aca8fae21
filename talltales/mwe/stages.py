"""Study 1 stages as plain functions of paths and parameters (one per Snakemake rule).

Each loads what it needs, calls the study code and writes its outputs atomically; the workflow scripts only
unpack the ``snakemake`` object into these calls, so every stage can also be run from Python directly.
"""

from __future__ import annotations

import json
import logging

from ..io import read_jsonl, write_csv, write_jsonl, write_text
from ..lm import lm_from_entry as _lm
from . import filters, generate, negation
from .datasets import load_dataset
from .evaluate import evaluate
from .metrics import format_table, in_format, score_table

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
                   top_k: int, batch_size: int, answer_format: dict | None = None) -> None:
    """Score ``model`` on the dataset; ``answer_format`` ({"name", "classes", "study_classes"}): under that answer
    format, its classes in place of the study's (an item with other classes is recorded as skipped)."""
    fmt, items = load_dataset(dataset)
    log.info("%s: %d items (%s format)", dataset, len(items), fmt)
    records = []
    if items:
        scored = in_format(items, answer_format["study_classes"], answer_format["classes"]) if answer_format else items
        lm = _lm(model, cache, batch_size)
        records = evaluate(lm, scored, body, template, top_k)
        measured = [(it, {c: v for c, v in r["class_logprobs"].items() if v is not None}) for it, r in
                    zip(scored, records) if it is not None]
        right = sum(it.classes.index(max(lp, key=lp.get)) in it.targets for it, lp in measured if lp)
        n = sum(1 for _, lp in measured if lp)
        log.info("%s on %s%s: the more likely class is correct on %d of %d items with a class log-prob (%s; %d "
                 "without)", model["name"], dataset, f" (answer format {answer_format['name']}: classes "
                 f"{answer_format['classes']})" if answer_format else "", right, n, f"{right / n:.3f}" if n else "n/a",
                 len(items) - n)
    write_jsonl(out, records)


def negate(dataset: str, out: str, source: str, model: dict | None, cache: str, prompt: str, sampling: dict,
           batch_size: int, file: str | None, min_chars: int, max_chars: int, min_overlap: float) -> None:
    """The negated twins of a dataset's items (:mod:`talltales.mwe.negation`), written by ``model`` (source lm) or
    read from ``file`` (source file)."""
    _, items = load_dataset(dataset)
    if source == "file":
        written = negation.read_twin_file(file, len(items))
        log.info("%s: %d hand-written twins for %d items", file, len(written), len(items))
    else:
        lm = _lm(model, cache, batch_size)
        written = negation.write_twins_lm(lm, items, prompt, sampling)
        log.info(lm.cache.stats())
    twins, _ = negation.build_twins(items, written, source if source == "file" else model["name"], min_chars,
                                    max_chars, min_overlap)
    write_jsonl(out, twins)


def table(dataset: str, dataset_name: str, responses: dict[str, str], models: dict[str, dict],
          bootstrap: dict, out: str, twins: dict | None = None) -> None:
    """The dataset's table; ``twins``: {"dataset": the twins file, "responses": {model: its responses on the twins}}
    adds the negation-cancelled accuracy."""
    df = score_table(dataset, responses, models, bootstrap, dataset_name=dataset_name, twins=twins)
    write_csv(out, df)
    log.info("\n%s", df.to_string(index=False))


def formats_table(datasets: dict[str, str], formats: dict[str, list[str]], classes: list[str],
                  responses: dict[tuple[str, str, str], str], models: dict[str, dict], bootstrap: dict,
                  out: str) -> None:
    df = format_table(datasets, formats, classes, responses, models, bootstrap)
    write_csv(out, df)
    log.info("\n%s", df.to_string(index=False))
