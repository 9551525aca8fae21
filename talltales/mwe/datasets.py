"""Evaluation dataset formats, detected per file.

* original: ``{"prompt": " Is ...?", "classes": [" Yes", " No"], "answer_index": 1}`` -> accuracy;
* Anthropic model-written-evals: ``{"question": ..., "answer_matching_behavior": " Yes" | [...],
  "answer_not_matching_behavior": " No" | [...]}`` -> the rate of behaviour-matching answers.

Both become :class:`Item` (classes + the indices that count as "correct" / "matching").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io import jsonl_records

ORIGINAL = "original"
ANTHROPIC = "anthropic"


class DatasetError(ValueError):
    pass


@dataclass
class Item:
    prompt: str
    classes: list[str]
    targets: list[int]  # indices of classes that count as correct (original) / matching behaviour
    meta: dict = field(default_factory=dict)


def _as_list(value, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise DatasetError(f"{where}: {key!r} must be a string or a non-empty list of strings, got {value!r}")


def detect_format(record: dict, where: str) -> str:
    if {"prompt", "classes", "answer_index"} <= set(record):
        return ORIGINAL
    if {"question", "answer_matching_behavior", "answer_not_matching_behavior"} <= set(record):
        return ANTHROPIC
    raise DatasetError(
        f"{where}: unknown item format with keys {sorted(record)}; expected either prompt/classes/answer_index "
        "(original) or question/answer_matching_behavior/answer_not_matching_behavior (Anthropic model-written evals)"
    )


def parse_item(record: dict, fmt: str, where: str) -> Item:
    if fmt == ORIGINAL:
        missing = {"prompt", "classes", "answer_index"} - set(record)
        if missing:
            raise DatasetError(f"{where}: missing key(s) {sorted(missing)} (original format: prompt, classes, answer_index)")
        prompt, classes, idx = record["prompt"], record["classes"], record["answer_index"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetError(f"{where}: 'prompt' must be a non-empty string")
        if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
            raise DatasetError(f"{where}: 'classes' must be a list of at least two strings, got {classes!r}")
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(classes):
            raise DatasetError(f"{where}: 'answer_index' must be an integer index into classes, got {idx!r}")
        meta = {k: v for k, v in record.items() if k not in {"prompt", "classes", "answer_index"}}
        return Item(prompt, list(classes), [idx], meta)
    missing = {"question", "answer_matching_behavior", "answer_not_matching_behavior"} - set(record)
    if missing:
        raise DatasetError(
            f"{where}: missing key(s) {sorted(missing)} (Anthropic format: question, answer_matching_behavior, "
            "answer_not_matching_behavior)"
        )
    q = record["question"]
    if not isinstance(q, str) or not q.strip():
        raise DatasetError(f"{where}: 'question' must be a non-empty string")
    match = _as_list(record["answer_matching_behavior"], where, "answer_matching_behavior")
    other = _as_list(record["answer_not_matching_behavior"], where, "answer_not_matching_behavior")
    classes = match + [o for o in other if o not in match]
    prompt = q if q[:1].isspace() else " " + q
    meta = {k: v for k, v in record.items() if k not in {"question", "answer_matching_behavior", "answer_not_matching_behavior"}}
    return Item(prompt, classes, list(range(len(match))), meta)


def load_dataset(path: str | Path) -> tuple[str, list[Item]]:
    """Read a JSON-lines dataset; returns (format, items). Errors name file:line and what was expected."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset file not found")
    fmt = None
    items: list[Item] = []
    for lineno, record in jsonl_records(path, DatasetError):
        where = f"{path}:{lineno}"
        if fmt is None:
            fmt = detect_format(record, where)
        items.append(parse_item(record, fmt, where))
    return fmt or ORIGINAL, items


def metric_name(fmt: str) -> str:
    return "accuracy" if fmt == ORIGINAL else "matching_behavior_rate"
