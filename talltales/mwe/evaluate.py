"""Stage 4: score a model on a dataset; one OpenAI-completions-shaped record per item, in dataset order."""

from __future__ import annotations

from typing import Any

from ..io import fill
from ..lm.base import LM
from .datasets import Item


def evaluate(lm: LM, items: list[Item | None], body: str, template: str, top_k: int) -> list[dict[str, Any]]:
    """A record per item; an item given as None (an answer format that does not apply to it) gets a record
    marked ``skipped`` with nothing measured."""
    todo = [n for n, it in enumerate(items) if it is not None]
    prompts = [fill(template, body=body, prompt=items[n].prompt) for n in todo]
    scores = dict(zip(todo, lm.score_choices(prompts, [items[n].classes for n in todo], top_k=top_k))) if todo else {}
    records = []
    for n in range(len(items)):
        rec = scores[n].to_record() if n in scores else {"text": "", "class_logprobs": {}, "skipped": True}
        rec["item"] = n
        rec["model"] = lm.spec.name
        records.append(rec)
    return records
