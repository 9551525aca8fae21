"""Negated twins: for each yes/no item, the same question negated, with the other class as its answer.

A model's constant preference for one class (the small models' yes-bias) moves the log-odds of an item and of its
twin in opposite directions, so combining the two cancels it (:func:`talltales.mwe.metrics.negation_scores`).

Twins come from an LM (a few-shot prompt through the study's backends, greedy, cached like every call) or from a
file of hand-written ones (JSON lines ``{"item": N, "prompt": " Is ... not ...?"}``, N the 0-based index of the
item in its dataset). Each written twin is checked (:func:`check_negation`); a dropped twin is counted by reason
and logged, and its item is left out of the pairs.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..io import fill, jsonl_records
from ..lm.base import LM, Sampling
from .datasets import DatasetError, Item
from .generate import check_question, clean_question, normalize_key

log = logging.getLogger(__name__)

# words that negate a yes/no question (a contraction ending in n't counts too)
NEGATION_WORDS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot"})


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def negation_count(text: str) -> int:
    return sum(1 for w in _words(text) if w in NEGATION_WORDS or w.endswith("n't"))


def check_negation(original: str, negated: str, min_chars: int, max_chars: int, min_overlap: float) -> str | None:
    """Why ``negated`` is not a usable negation of ``original`` (None when it is): it must be one well-formed
    question (the longlist's checks), differ from the original, add or remove a negation (the number of negating
    words changes parity) and keep the original's other words (at least ``min_overlap`` of them, so that it asks
    the same thing)."""
    reason = check_question(negated, min_chars, max_chars)
    if reason:
        return reason
    if normalize_key(negated) == normalize_key(original):
        return "unchanged"
    if negation_count(negated) % 2 == negation_count(original) % 2:
        return "no_negation"
    content = {w for w in _words(original) if w not in NEGATION_WORDS and not w.endswith("n't")}
    kept = content & set(_words(negated))
    if content and len(kept) / len(content) < min_overlap:
        return "changed_question"
    return None


def flipped_index(item: Item) -> int | None:
    """The answer of an item's negation: the other class of a two-class item with one correct class."""
    if len(item.classes) != 2 or len(item.targets) != 1:
        return None
    return 1 - item.targets[0]


def read_twin_file(path: str | Path, n_items: int) -> dict[int, str]:
    """Hand-written twins: item index -> negated question. Errors name file:line and what was expected."""
    out: dict[int, str] = {}
    for lineno, rec in jsonl_records(Path(path), DatasetError):
        where = f"{path}:{lineno}"
        if set(rec) - {"item", "prompt", "note"} or not {"item", "prompt"} <= set(rec):
            raise DatasetError(f"{where}: a twin is {{\"item\": N, \"prompt\": \" Is ... not ...?\"}} (optional "
                               f"\"note\"), got keys {sorted(rec)}")
        n, prompt = rec["item"], rec["prompt"]
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < n_items:
            raise DatasetError(f"{where}: 'item' must be the 0-based index of an item of the dataset (0..{n_items - 1}),"
                               f" got {n!r}")
        if n in out:
            raise DatasetError(f"{where}: a second twin for item {n}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetError(f"{where}: 'prompt' must be a non-empty string")
        out[n] = prompt
    return out


def write_twins_lm(lm: LM, items: list[Item], prompt: str, sampling: dict[str, Any]) -> dict[int, str]:
    """Item index -> the LM's raw negation (greedy by default), for the two-class items."""
    todo = [n for n, it in enumerate(items) if flipped_index(it) is not None]
    s = Sampling(max_tokens=sampling["max_tokens"], temperature=sampling["temperature"], top_p=sampling["top_p"],
                 stop=tuple(sampling["stop"]), seed=sampling.get("seed", 0))
    texts = lm.generate([fill(prompt, prompt=items[n].prompt) for n in todo], s) if todo else []
    return dict(zip(todo, texts))


def build_twins(items: list[Item], written: dict[int, str], source: str, min_chars: int, max_chars: int,
                min_overlap: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The twin list (original format, each with ``source_item``) and its stats (kept, dropped by reason)."""
    twins, drops = [], Counter()
    for n, it in enumerate(items):
        flip = flipped_index(it)
        if flip is None:
            drops["not_two_classes"] += 1
            continue
        if n not in written:
            drops["no_twin_written"] += 1
            continue
        q = clean_question(written[n])
        reason = check_negation(it.prompt.strip(), q, min_chars, max_chars, min_overlap)
        if reason:
            drops[reason] += 1
            if sum(drops.values()) <= 5:  # a few examples of what the check drops
                log.info("dropped (%s): item %d %r -> %r", reason, n, it.prompt.strip(), written[n])
            continue
        twins.append({"prompt": " " + q, "classes": list(it.classes), "answer_index": flip, "source_item": n,
                      "source_prompt": it.prompt, "negation": source, "raw": written[n]})
    stats = {"items": len(items), "kept": len(twins), "dropped": dict(drops)}
    log.info("negated twins (%s): kept %d of %d items; dropped %s", source, len(twins), len(items),
             dict(drops) or "none")
    return twins, stats
