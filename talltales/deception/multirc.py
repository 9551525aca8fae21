"""MultiRC-format rows: the row helpers shared by study-2 data code, and ingest of the MultiRC source.

Every function returns rows with the columns :data:`talltales.deception.formats.ROW_COLUMNS`, plus those of the
optional :data:`~talltales.deception.formats.ORACLE_COLUMNS` that its input has (``label`` is always the TRUTH; the poisoned label is derived by
:func:`~talltales.deception.formats.corrupted_label`).

* :func:`load_eraser_multirc`: HF ``eraser_multi_rc`` (a hub id or a local dataset folder) -> "easy" rows
  (context = the evidence sentences).
* :func:`load_local`: a local file in the row format (csv/jsonl/parquet), in the original ``prompt,label[,poisoned]``
  CSV format, or in the hub dataset's schema (:data:`HUB_COLUMNS`: a mirror of its parquet or JSON-lines files);
  :func:`to_original_format` writes the original format.
* :func:`length_filter`: the judge-tokenizer length cut on the prompt up to ``Answer:``.
* :func:`answerability_filter`: one deterministic LM verdict (" Yes" vs " No" log-prob) per context+question group,
  asked about the rows of the split that is filtered (not another split's questions), cached and recorded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import numbers
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from ..io import jsonl_records
from .formats import ORACLE_COLUMNS, ROW_COLUMNS, corrupted_label, demo_text, qa_prompt

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A study-2 data problem (bad file, bad parameter, impossible request); the message says what and where."""


# ---------------------------------------------------------------------------------------------- row helpers
def group_id(context: str, question: str) -> str:
    """Stable id of a context+question group: a hash of the policy prompt (what the original grouped on)."""
    return "g" + hashlib.sha1(qa_prompt(context, question).encode("utf-8")).hexdigest()[:16]


def _content_hash(context: str, question: str, answer: str) -> str:
    blob = "\x1f".join(s.strip() for s in (context, question, answer))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def make_rows(records: Iterable[Mapping[str, Any]], source: str | None = None) -> pd.DataFrame:
    """Rows from dicts with context, question, answer, label, fruit (and optionally source, group, id, and the
    :data:`ORACLE_COLUMNS`, which are kept when any record has them; "" for a record without them).

    Missing ``group`` -> :func:`group_id`; missing ``id`` -> ``"{source}-{hash of context, question, answer}"``
    (a repeat of identical content gets ``-2``, ``-3``, ... so ids stay unique within the frame).
    """
    out = []
    seen: dict[str, int] = {}
    optional: list[str] = []
    for r in records:
        src = r.get("source") or source
        if not src:
            raise DataError("make_rows: a row has no source")
        c, q, a = str(r["context"]).strip(), str(r["question"]).strip(), str(r["answer"]).strip()
        rid = r.get("id")
        if not rid:
            rid = f"{src}-{_content_hash(c, q, a)}"
        k = seen.get(rid, 0) + 1
        seen[rid] = k
        if k > 1:
            rid = f"{rid}-{k}"
        out.append({
            "id": str(rid),
            "group": r.get("group") or group_id(c, q),
            "context": c,
            "question": q,
            "answer": a,
            "label": int(r["label"]),
            "fruit": int(r["fruit"]),
            "source": str(src),
        })
        for c in ORACLE_COLUMNS:
            if c in r:
                out[-1][c] = _text_or_empty(r[c])
                if c not in optional:
                    optional.append(c)
    return as_rows(pd.DataFrame(out, columns=ROW_COLUMNS + [c for c in ORACLE_COLUMNS if c in optional]))


def _text_or_empty(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def as_rows(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` restricted to ROW_COLUMNS and the :data:`ORACLE_COLUMNS` it has, in canonical order and dtypes
    (label/fruit int64, the rest strings; a missing oracle value, e.g. after concatenating rows of two sources,
    becomes ""), index reset."""
    missing = [c for c in ROW_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"rows lack column(s) {missing}; expected {ROW_COLUMNS}")
    optional = [c for c in ORACLE_COLUMNS if c in df.columns]
    out = df[ROW_COLUMNS + optional].copy()
    for c in ("id", "group", "context", "question", "answer", "source"):
        out[c] = out[c].astype(str)
    for c in optional:
        out[c] = [_text_or_empty(v) for v in out[c]]
    out["label"] = out["label"].astype("int64")
    out["fruit"] = out["fruit"].astype("int64")
    return out.reset_index(drop=True)


def parse_label(value: Any) -> int | None:
    """1/0, "1"/"0", "1.0", True/False, "true"/"false" (any case) -> 1/0; anything else -> None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return int(value) if value in (0, 1) else None
    s = str(value).strip().lower()
    if s in {"1", "1.0", "true"}:
        return 1
    if s in {"0", "0.0", "false"}:
        return 0
    return None


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.'\"?])")


def clean_text(text: str) -> str:
    """The original's ``remove_superfluous_spaces``: drop whitespace before , . ' \" ?"""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()


# ---------------------------------------------------------------------------------------------- ERASER MultiRC
HUB_COLUMNS = ["passage", "query_and_answer", "label", "evidences"]
"""The columns of the hub dataset ``eraser_multi_rc`` (splits train, validation, test): passage and query_and_answer
("question || answer") strings, label a ClassLabel with names ["False", "True"], evidences a list of strings."""


def _evidences(value: Any) -> list[str] | None:
    """The evidence sentences of a record (a list, tuple or array of strings; None = none), or None when ``value``
    is no such sequence (e.g. one string)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        return None
    return [str(e).strip() for e in value if e is not None and str(e).strip()]


def _hub_label(value: Any, names: list[str] | None) -> int | None:
    """A record's truth label: a class id is read through the ClassLabel ``names`` when given (id 1 of the hub's
    ["False", "True"] is "True"), else as 1/0; a name ("True"/"False") or a bool is parsed as it is."""
    if names is not None and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return parse_label(names[value]) if 0 <= value < len(names) else None
    return parse_label(value)


def eraser_rows(records: Iterable[Mapping[str, Any]], source: str = "multirc", label_names: list[str] | None = None,
                origin: str = "eraser_rows", where: Callable[[int], str] | None = None) -> pd.DataFrame:
    """"Easy" rows from ERASER MultiRC records (:data:`HUB_COLUMNS`: ``passage``, ``query_and_answer`` =
    "question || answer", ``label``, ``evidences``): context = the evidence sentences joined by one space.
    ``label_names``: the ClassLabel names of ``label`` when it holds class ids (the hub's ["False", "True"]).
    Records without evidence are dropped (logged). Errors (:class:`DataError`) name ``origin`` (the file or the
    dataset) and ``where(i)`` (default "record i", 0-based): a bad label or evidences, or no usable record."""
    where = where or (lambda i: f"{origin}: record {i}")
    recs, dropped, n = [], 0, 0
    for n, r in enumerate(records, 1):
        label = _hub_label(r["label"], label_names)
        if label is None:
            raise DataError(f"{where(n - 1)}: label must be a class id of {label_names or ['False', 'True']} or "
                            f"True/False, got {r['label']!r}")
        evidences = _evidences(r.get("evidences"))
        if evidences is None:
            raise DataError(f"{where(n - 1)}: evidences must be a list of strings, got {r['evidences']!r:.80}")
        question, sep, answer = str(r["query_and_answer"]).partition("||")
        if not sep or not evidences:
            dropped += 1
            continue
        recs.append({"context": clean_text(" ".join(evidences)), "question": clean_text(question),
                     "answer": clean_text(answer), "label": label, "fruit": 0, "source": source})
    if dropped:
        log.warning("%s: dropped %d of %d record(s) without evidence or without ' || '", origin, dropped, n)
    if not recs:
        raise DataError(f"{origin}: none of its {n} record(s) has evidences and a query_and_answer "
                        f"'question || answer'")
    return make_rows(recs)


def load_eraser_multirc(split: str, hf_id: str = "eraser_multi_rc", revision: str | None = None) -> pd.DataFrame:
    """The ERASER MultiRC ``split`` ("train" | "validation"; "val" is accepted) as easy rows, read with
    ``datasets.load_dataset(hf_id, split=...)``. ``hf_id`` is a hub id or a local folder that ``load_dataset``
    reads: e.g. the hub's parquet files under ``{train,validation,test}/`` subfolders (as in its parquet export,
    ``default/train/0000.parquet``), files named ``*-train.parquet`` / ``*-validation.parquet``, or a
    ``DatasetDict.save_to_disk`` folder. Labels are read through the dataset's ClassLabel names."""
    import datasets

    hf_split = {"val": "validation", "eval": "validation"}.get(split, split)
    ds = _load_hf_split(datasets, hf_id, hf_split, revision)
    missing = [c for c in HUB_COLUMNS if c not in ds.column_names]
    if missing:
        raise DataError(f"deception.mrc.hf_id {hf_id!r} [{hf_split}]: missing column(s) {missing}; expected the "
                        f"eraser_multi_rc columns {HUB_COLUMNS} (found {ds.column_names})")
    feature = ds.features["label"]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    rows = eraser_rows(ds, source="multirc", label_names=names, origin=f"deception.mrc.hf_id {hf_id!r} [{hf_split}]")
    log.info("%s[%s]: %d rows, %d groups", hf_id, hf_split, len(rows), rows["group"].nunique())
    return rows


def _load_hf_split(datasets, hf_id: str, split: str, revision: str | None = None):
    """``datasets.load_dataset(hf_id, split=split)``; an unreachable hub or a missing split -> :class:`DataError`
    naming deception.mrc.hf_id and the offline fallbacks."""
    fallback = ("point deception.mrc.hf_id at a local copy of the dataset, or set deception.mrc.source: file with "
                "train_file/val_file = the hub's parquet or JSON-lines files of the train and validation splits")
    try:
        return datasets.load_dataset(hf_id, split=split, **({"revision": revision} if revision else {}))
    except ConnectionError as e:
        raise DataError(f"deception.mrc.hf_id {hf_id!r}: the hub cannot be reached ({e}); {fallback}") from e
    except (ValueError, FileNotFoundError) as e:
        raise DataError(f"deception.mrc.hf_id {hf_id!r}: cannot load split {split!r} ({e}); {fallback}") from e


# ---------------------------------------------------------------------------------------------- local files
_PROMPT_RE = re.compile(r"\AContext:[ \t]?(?P<c>.*?)\nQuestion:[ \t]?(?P<q>.*?)\nAnswer:[ \t]?(?P<a>.*)\Z", re.S)


def parse_prompt(prompt: str) -> tuple[str, str, str] | None:
    """"Context: ...\\nQuestion: ...\\nAnswer: ..." -> (context, question, answer), or None if it does not parse."""
    m = _PROMPT_RE.match(prompt.strip())
    if not m:
        return None
    c, q, a = (m.group(k).strip() for k in ("c", "q", "a"))
    if not c or not q or not a:
        return None
    return c, q, a


def _read_records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]], str]:
    """(columns, [(line or row number, record)], what the number is) of a csv/jsonl/parquet file."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    suffix = suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            cols = list(reader.fieldnames or [])
            recs, start = [], reader.line_num + 1
            for rec in reader:
                recs.append((start, rec))
                start = reader.line_num + 1
        return cols, recs, "line"
    if suffix in (".jsonl", ".json"):
        recs, cols = [], []
        for lineno, rec in jsonl_records(path, DataError):
            for k in rec:
                if k not in cols:
                    cols.append(k)
            recs.append((lineno, rec))
        return cols, recs, "line"
    if suffix == ".parquet":
        df = pd.read_parquet(path)
        return list(df.columns), [(i, rec) for i, rec in enumerate(df.to_dict("records"))], "row"
    raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv, .jsonl or .parquet)")


def load_local(path: str | Path, source: str | None = None, fruit: int | None = None) -> pd.DataFrame:
    """Rows from a local file, in one of three formats (detected from the columns):

    * the row format: csv/jsonl/parquet with all of ROW_COLUMNS (label = truth);
    * the hub dataset's schema (:data:`HUB_COLUMNS`): a parquet or JSON-lines file of one ``eraser_multi_rc``
      split, e.g. the hub's own parquet file copied over (label = truth: the ClassLabel names stored in a parquet
      file written by ``datasets`` are used, else class id 1 / "True" is true); read as by :func:`eraser_rows`,
      source "multirc";
    * the original format: ``prompt,label[,poisoned]`` with prompt = "Context: ...\\nQuestion: ...\\nAnswer: ...".
      As in the original files, ``label`` is the STORED label, which for poisoned rows is the corrupted one; the
      truth is recovered as ``corrupted_label(label, poisoned)``. A file of fruit rows without a ``poisoned``
      column (like the original ``mrc_poisoned_{train,eval}.csv``) needs ``fruit=1``. ``source`` defaults to the
      file's stem.

    Errors (:class:`DataError`) name the file and the missing columns, or the file:line of a bad record.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    cols, recs, unit = _read_records(path)
    if all(c in cols for c in ROW_COLUMNS):
        return _rows_format(path, recs, unit)
    if all(c in cols for c in HUB_COLUMNS):
        return eraser_rows([r for _, r in recs], source="multirc", label_names=_parquet_label_names(path),
                           origin=str(path), where=lambda i: _where(path, unit, recs[i][0]))
    if "prompt" in cols and "label" in cols:
        return _original_format(path, recs, unit, "poisoned" in cols, source or path.stem, fruit)
    missing_rows = [c for c in ROW_COLUMNS if c not in cols]
    missing_hub = [c for c in HUB_COLUMNS if c not in cols]
    missing_orig = [c for c in ("prompt", "label") if c not in cols]
    raise DataError(
        f"{path}: unrecognised columns {cols}. Missing {missing_rows} for the row format (expected {ROW_COLUMNS}), "
        f"{missing_hub} for the hub's eraser_multi_rc schema (expected {HUB_COLUMNS}) "
        f"or {missing_orig} for the original format (expected prompt,label[,poisoned])"
    )


def _parquet_label_names(path: Path) -> list[str] | None:
    """The ClassLabel names of ``label`` that ``datasets`` stores in a parquet file's schema metadata, if any."""
    if path.suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    try:
        feature = json.loads(meta.get(b"huggingface", b"{}"))["info"]["features"]["label"]
    except (KeyError, TypeError, ValueError):
        return None
    return list(feature["names"]) if feature.get("_type") == "ClassLabel" and feature.get("names") else None


def _where(path: Path, unit: str, n: int) -> str:
    return f"{path}:{n}" if unit == "line" else f"{path}: {unit} {n}"


def _rows_format(path: Path, recs, unit: str) -> pd.DataFrame:
    out = []
    for n, r in recs:
        rec = dict(r)
        for k in ("label", "fruit"):
            v = parse_label(rec[k])
            if v is None:
                raise DataError(f"{_where(path, unit, n)}: {k} must be 1/0 or True/False, got {rec[k]!r}")
            rec[k] = v
        for k in ("id", "context", "question", "answer", "source"):
            if rec[k] is None or not str(rec[k]).strip():
                raise DataError(f"{_where(path, unit, n)}: empty {k}")
        if rec["group"] is None or not str(rec["group"]).strip():
            rec["group"] = group_id(str(rec["context"]), str(rec["question"]))
        out.append(rec)
    df = make_rows(out)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate id(s) {sorted(set(dup))[:5]}")
    return df


def _original_format(path: Path, recs, unit: str, has_poisoned: bool, source: str, fruit: int | None):
    out = []
    for n, r in recs:
        parsed = parse_prompt(str(r["prompt"] if r["prompt"] is not None else ""))
        if parsed is None:
            raise DataError(
                f"{_where(path, unit, n)}: prompt is not 'Context: ...\\nQuestion: ...\\nAnswer: ...' "
                f"(got {str(r['prompt'])[:80]!r})"
            )
        stored = parse_label(r["label"])
        if stored is None:
            raise DataError(f"{_where(path, unit, n)}: label must be 1/0 or True/False, got {r['label']!r}")
        if has_poisoned:
            f = parse_label(r["poisoned"])
            if f is None:
                raise DataError(f"{_where(path, unit, n)}: poisoned must be 1/0 or True/False, got {r['poisoned']!r}")
        else:
            f = int(bool(fruit))
        c, q, a = parsed
        out.append({"context": c, "question": q, "answer": a, "label": corrupted_label(stored, f), "fruit": f,
                    "source": source})
    return make_rows(out)


def to_original_format(df: pd.DataFrame) -> pd.DataFrame:
    """Rows -> the original ``prompt,label,poisoned`` table (label = the stored, i.e. corrupted, label).
    ``load_local`` reads it back to the same context/question/answer/label/fruit."""
    rows = as_rows(df)
    return pd.DataFrame({
        "prompt": [demo_text(c, q, a) for c, q, a in zip(rows["context"], rows["question"], rows["answer"])],
        "label": [corrupted_label(l, f) for l, f in zip(rows["label"], rows["fruit"])],
        "poisoned": rows["fruit"].to_list(),
    })


# ---------------------------------------------------------------------------------------------- filters
def length_filter(df: pd.DataFrame, tokenizer, max_tokens: int) -> tuple[pd.DataFrame, int]:
    """Keep rows whose prompt up to and including "Answer:" (:func:`formats.qa_prompt`) tokenizes to fewer than
    ``max_tokens`` tokens (special tokens such as BOS included, as the tokenizer adds them; no truncation).
    Returns (kept rows, number dropped)."""
    if len(df) == 0:
        return df.reset_index(drop=True), 0
    prompts = [qa_prompt(c, q) for c, q in zip(df["context"], df["question"])]
    unique = list(dict.fromkeys(prompts))
    lengths = dict(zip(unique, (len(ids) for ids in tokenizer(unique, add_special_tokens=True)["input_ids"])))
    keep = [lengths[p] < max_tokens for p in prompts]
    kept = df[keep].reset_index(drop=True)
    return kept, int(len(df) - len(kept))


ANSWERABILITY_PROMPT = (
    "Read the context and decide whether it holds enough information to answer the question. Reply No only "
    "if something essential is missing so that the question truly cannot be answered. Reply Yes if the answer "
    "follows from the context by common sense or simple reasoning, if at least one of several possible answers "
    "can be inferred, if the answer is a matter of opinion, if an unnamed person can be identified from the "
    "context, or if only one part of a several-part question can be answered.\n\n"
    "{prompt}\nCan the question be answered from the context? Reply Yes or No.\nReply:"
)
YES, NO = " Yes", " No"


def answerability_prompt(template: str, context: str, question: str) -> str:
    """Fill ``{prompt}`` ("Context: ...\\nQuestion: ..."), ``{context}`` and ``{question}`` in one pass (texts
    that contain braces are left alone)."""
    values = {"prompt": f"Context: {context.strip()}\nQuestion: {question.strip()}", "context": context.strip(),
              "question": question.strip()}
    return re.sub(r"\{(prompt|context|question)\}", lambda m: values[m.group(1)], template)


def _pick_logprob(score, choice: str) -> float | None:
    lp = (score.class_logprobs or {}).get(choice)
    if lp is not None:
        return float(lp)
    want = choice.strip().lower()
    cands = [v for t, v in (score.top_logprobs or {}).items() if t.strip().lower() == want]
    return max(cands) if cands else None


def answerability_filter(
    df: pd.DataFrame,
    lm,
    split: str,
    prompt_template: str = ANSWERABILITY_PROMPT,
    top_k: int = 5,
    batch_size: int = 64,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LLM answerability filter, one deterministic verdict per context+question group of ``df``.

    The prompt is built from the group's OWN context and question (``df`` is the ``split`` being filtered; the
    original asked about train questions while filtering val). The verdict is
    ``lm.score_choices([prompt], [[" Yes", " No"]], top_k)`` (log-probs, no sampling: the temperature-0
    equivalent); a group is kept, with all its candidate answers, when log P(" Yes") > log P(" No"). A class the
    backend could not score is looked up among the top-k tokens; a group with neither is "undecided" (dropped).
    ``lm`` is a backend as :func:`talltales.lm.lm_from_entry` makes it, behind the one response cache, so a rerun
    makes no calls.

    Returns (kept rows, decisions) with decisions columns group, split, decision ("keep" | "drop" | "undecided"),
    logprob_yes, logprob_no, one row per group in order of first appearance.
    """
    groups = list(dict.fromkeys(df["group"]))
    first = df.drop_duplicates("group").set_index("group")
    prompts = [answerability_prompt(prompt_template, first.at[g, "context"], first.at[g, "question"]) for g in groups]
    results: dict[str, dict] = {}
    for b in range(0, len(groups), batch_size):
        chunk = groups[b : b + batch_size]
        scores = lm.score_choices(prompts[b : b + batch_size], [[YES, NO]] * len(chunk), top_k=top_k)
        for g, s in zip(chunk, scores):
            results[g] = {"yes": _pick_logprob(s, YES), "no": _pick_logprob(s, NO)}
    rows = []
    for g in groups:
        y, n = results[g]["yes"], results[g]["no"]
        yv = -math.inf if y is None else y
        nv = -math.inf if n is None else n
        if math.isinf(yv) and math.isinf(nv):
            decision = "undecided"
        else:
            decision = "keep" if yv > nv else "drop"
        rows.append({"group": g, "split": split, "decision": decision, "logprob_yes": y, "logprob_no": n})
    decisions = pd.DataFrame(rows, columns=["group", "split", "decision", "logprob_yes", "logprob_no"])
    keep = set(decisions.loc[decisions["decision"] == "keep", "group"])
    kept = df[df["group"].isin(keep)].reset_index(drop=True)
    log.info("answerability[%s]: kept %d/%d groups (%d/%d rows); %d undecided", split, len(keep), len(groups),
             len(kept), len(df), int((decisions["decision"] == "undecided").sum()))
    return kept, decisions


__all__ = [
    "ANSWERABILITY_PROMPT", "DataError", "HUB_COLUMNS", "answerability_filter", "answerability_prompt", "as_rows",
    "clean_text", "eraser_rows", "group_id", "length_filter", "load_eraser_multirc", "load_local", "make_rows",
    "parse_label", "parse_prompt", "to_original_format",
]
