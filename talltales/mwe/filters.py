"""Stages 2 and 3: the label check (a base model answers each question; shortlist = greedy answer equals the
label; strict shortlist = additionally the label's share of the top-k probability mass exceeds a per-label
threshold) and the "sounds harsh" check (an instruct model judges the question with its answer), then the final
lists' label balance (:func:`balance_labels`: the filters amplify a label skew, so an always-"yes" model would
otherwise score well)."""

from __future__ import annotations

import logging
import math
import random

from ..io import fill
from ..lm.base import LM, logsumexp

log = logging.getLogger(__name__)


def label_check(lm: LM, items: list[dict], body: str, template: str, top_k: int) -> list[dict]:
    """Score every item with the checker; adds a ``label_check`` record (greedy token, top-k, label share)."""
    prompts = [fill(template, body=body, prompt=it["prompt"]) for it in items]
    scores = lm.score_choices(prompts, [it["classes"] for it in items], top_k=top_k)
    out = []
    for it, sc in zip(items, scores):
        label = it["classes"][it["answer_index"]]
        mass = sum(math.exp(v) for v in sc.top_logprobs.values())
        p_label = math.exp(sc.top_logprobs[label]) if label in sc.top_logprobs else 0.0
        rec = dict(it)
        rec["label_check"] = {
            "checker": lm.spec.name,
            "greedy": sc.text,
            "top_logprobs": sc.top_logprobs,
            "label_share": p_label / mass if mass > 0 else 0.0,
        }
        out.append(rec)
    return out


def shortlists(checked: list[dict], thresholds: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """(shortlist, strict shortlist) from label-checked items."""
    short, strict = [], []
    for rec in checked:
        label = rec["classes"][rec["answer_index"]]
        lc = rec["label_check"]
        if lc["greedy"] != label:
            continue
        short.append(rec)
        if lc["label_share"] > thresholds.get(label, 0.0):
            strict.append(rec)
    log.info("shortlist %d of %d, strict %d (thresholds %s)", len(short), len(checked), len(strict), thresholds)
    return short, strict


def harsh_check(
    lm: LM, items: list[dict], body: str, template: str, classes: list[str], keep: str, top_k: int,
    rule: str = "greedy",
) -> list[dict]:
    """Keep the items whose answer the checker calls harsh.

    rule "greedy" (the original study): the greedy token is ``keep``. Rule "calibrated": the log-odds of
    ``keep`` against the other classes is above its mean over the list, which removes the checker's overall
    preference for one answer (small checkers often answer the same for every item)."""
    prompts = [
        fill(template, body=body, prompt=it["prompt"], answer=it["classes"][it["answer_index"]]) for it in items
    ]
    scores = lm.score_choices(prompts, [classes] * len(items), top_k=top_k)
    margins = []
    for sc in scores:
        lps = sc.class_logprobs
        others = [v for c, v in lps.items() if c != keep and v is not None]
        k = lps.get(keep)
        margins.append(None if k is None or not others else k - logsumexp(others))
    known = [m for m in margins if m is not None]
    cut = sum(known) / len(known) if known else 0.0
    kept = []
    for it, sc, margin in zip(items, scores, margins):
        rec = dict(it)
        rec["harsh_check"] = {
            "checker": lm.spec.name,
            "rule": rule,
            "greedy": sc.text,
            "class_logprobs": sc.class_logprobs,
            "log_odds": margin,
        }
        if rule == "greedy":
            ok = sc.text == keep
        else:
            ok = margin is not None and margin >= cut
        if ok:
            kept.append(rec)
    log.info("harsh check (%s): kept %d of %d", rule, len(kept), len(items))
    return kept


def balance_labels(items: list[dict], seed: int) -> tuple[list[dict], dict[str, int], dict[str, int]]:
    """(kept, counts before, counts after): every label down-sampled at random (seeded) to the count of the rarest
    label, the items kept in their original order. A label that does not occur is not counted, so a list with a
    single label is kept whole (nothing to balance against; the caller logs it)."""
    by_label: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_label.setdefault(it["classes"][it["answer_index"]], []).append(i)
    before = {k: len(v) for k, v in sorted(by_label.items())}
    if len(by_label) < 2:
        return list(items), before, dict(before)
    n = min(before.values())
    rng = random.Random(seed)
    keep = sorted(i for k in sorted(by_label) for i in rng.sample(by_label[k], n))
    kept = [items[i] for i in keep]
    return kept, before, {k: n for k in before}
