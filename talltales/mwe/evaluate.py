"""Stage 4: score a model on a dataset; one OpenAI-completions-shaped record per item, in dataset order."""

from __future__ import annotations

from typing import Any

from ..io import fill
from ..lm.base import LM
from .datasets import Item


def evaluate(lm: LM, items: list[Item], body: str, template: str, top_k: int) -> list[dict[str, Any]]:
    prompts = [fill(template, body=body, prompt=it.prompt) for it in items]
    scores = lm.score_choices(prompts, [it.classes for it in items], top_k=top_k)
    records = []
    for n, (it, sc) in enumerate(zip(items, scores)):
        rec = sc.to_record()
        rec["item"] = n
        rec["model"] = lm.spec.name
        records.append(rec)
    return records
