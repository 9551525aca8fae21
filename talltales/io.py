"""Small file helpers. Every write is atomic (a temporary file in the same folder, then one rename), so a killed
job never leaves a half-written output."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[str]], Any]) -> Any:
    """Create ``path``'s folder, call ``write(fh)`` on a temporary text file next to ``path`` and rename it to
    ``path`` (the temporary file is removed if ``write`` fails). Returns what ``write`` returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file owner-only; an output gets the usual mode
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            result = write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def write_json(path: str | Path, obj: Any) -> None:
    """Indented JSON (values JSON cannot hold are written as ``str``)."""
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_csv(path: str | Path, df) -> None:
    """A DataFrame as CSV, without its index."""
    atomic_write(path, lambda fh: df.to_csv(fh, index=False))


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    def write(fh) -> int:
        n = 0
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
        return n

    return atomic_write(path, write)


def jsonl_records(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is not valid JSON or not a
    JSON object raises ``error`` naming ``path:line``."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: not valid JSON ({exc.msg}); expected one JSON object per line") from exc
            if not isinstance(rec, dict):
                raise error(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [rec for _, rec in jsonl_records(path)]


def read_table(path: str | Path):
    """A study-2 table (csv, parquet or jsonl) with empty fields and text such as "None" or "NA" kept as strings;
    the text columns context, question and answer (where present) are strings."""
    import pandas as pd

    path = str(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False, dtype={"context": str, "question": str, "answer": str})


def fill(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders by plain replacement (prompts may contain other braces)."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template
