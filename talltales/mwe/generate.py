"""Stage 1: the longlist. A generator LM continues few-shot numbered lists of questions whose correct answer
is known ('yes' list, 'no' list); each call yields one question.

Questions are normalized, checked (a question mark, length bounds) and de-duplicated across both prompts;
every drop is counted and logged. Items keep the original fields plus provenance.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from ..lm.base import LM, Sampling

log = logging.getLogger(__name__)


def normalize_key(question: str) -> str:
    """De-duplication key: lower case, letters and digits only, single spaces."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", question.lower()).split())


def clean_question(text: str) -> str:
    q = text.strip().strip('"').strip()
    q = re.sub(r"^\d+[.)]\s*", "", q)  # a stray list number
    return " ".join(q.split())


def check_question(q: str, min_chars: int, max_chars: int) -> str | None:
    """Reason for dropping ``q``, or None when it is a valid question."""
    if not q:
        return "empty"
    if not q.endswith("?"):
        return "not_a_question"
    if q.count("?") > 1:
        return "several_questions"
    if len(q) < min_chars:
        return "too_short"
    if len(q) > max_chars:
        return "too_long"
    if not q[0].isalpha() or not q[0].isupper():
        return "bad_start"
    return None


def build_longlist(
    lm: LM,
    prompts: list[dict[str, Any]],
    classes: list[str],
    sampling: dict[str, Any],
    seed: int,
    min_chars: int,
    max_chars: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate, check and de-duplicate; returns (items, stats)."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    drops: Counter = Counter()
    per_prompt: dict[str, int] = {}
    for k, p in enumerate(prompts):
        s = Sampling(
            max_tokens=sampling["max_tokens"],
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            stop=tuple(sampling["stop"]),
            seed=seed + 1_000_003 * k,
        )
        log.info("prompt %r: %d calls to %s", p["id"], p["n"], lm.spec.name)
        texts = lm.generate([p["text"]] * p["n"], s)
        kept = 0
        for i, text in enumerate(texts):
            q = clean_question(text)
            reason = check_question(q, min_chars, max_chars)
            if reason is None and normalize_key(q) in seen:
                reason = "duplicate"
            if reason:
                drops[reason] += 1
                continue
            seen.add(normalize_key(q))
            kept += 1
            items.append(
                {
                    "prompt": " " + q,
                    "classes": list(classes),
                    "answer_index": p["answer_index"],
                    "generator": lm.spec.name,
                    "prompt_id": p["id"],
                    "call": i,
                    "seed": s.seed,
                    "raw": text,
                }
            )
        per_prompt[p["id"]] = kept
    stats = {"kept": len(items), "kept_per_prompt": per_prompt, "dropped": dict(drops)}
    log.info("longlist: kept %d, kept per prompt %s, dropped %s", len(items), per_prompt, dict(drops))
    return items, stats
