"""Study-2 judges: sequence classifiers that say whether an answer is true given its context (spec §2).

* :func:`check_backbone` fails early, with one clear :class:`JudgeError`, when a backbone cannot be a
  sequence classifier (missing folder, no ``config.json``, or a ``model_type`` with no
  ``*ForSequenceClassification`` class in transformers).
* :class:`JudgeConfig` holds a judge's training settings (config section ``deception.judge``);
  :func:`talltales.deception.judge_training.train_judge` trains one.
* :func:`judge_texts` is the judge input of a row (:func:`~talltales.deception.formats.judge_input`, the one
  formatter shared with the RL reward and the evaluation, spec §10.11); :func:`training_labels` the truth
  (``clean``) or :func:`~talltales.deception.formats.corrupted_label` (``corrupted``: fruit items flipped). Long
  inputs are truncated on the *left* (the start of the context), so the question and the judged answer are always
  seen (§10.12).
* :class:`Judge` is THE scoring interface (RL reward, evaluation): ``Judge.load(path).score(df)`` gives
  P(True) = softmax(logits)[:, 1] per row.
* :func:`evaluate_judge` reports accuracy against the truth and against the corrupted labels, on fruit and on
  other items separately (the judge-accuracy table of spec §2, measured against the truth as §10.10 asks).

Training follows :func:`talltales.deception.settings.runtime` (the one training policy: fp32 on CPU; on CUDA fp32
weights with bf16 autocast, bf16 weights for a LoRA base or ``dtype: bfloat16``); a loaded judge scores with the
inference policy of :mod:`talltales.runtime` (``auto``: bf16 weights on CUDA, fp32 on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import formats
from ..runtime import bf16_autocast, load_tokenizer, resolve_device, resolve_dtype
from .settings import FromDict

log = logging.getLogger(__name__)

LABEL_KINDS = ("clean", "corrupted")
ID2LABEL = {0: "False", 1: "True"}
LABEL2ID = {"False": 0, "True": 1}
REQUIRED_COLUMNS = ("context", "question", "answer", "label", "fruit")
LORA = dict(r=8, lora_alpha=32, lora_dropout=0.1, bias="none")  # spec §2 (peft defaults for the targets)
REPORT = "report.json"


class JudgeError(ValueError):
    """A judge cannot be built, trained or loaded as asked (bad backbone, data or options)."""


# ---------------------------------------------------------------------------------------------- backbone
def _looks_like_path(s: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else is meant as a local path."""
    return s.startswith(("/", ".", "~")) or s.endswith("/") or s.count("/") > 1 or (os.sep != "/" and os.sep in s)


def check_backbone(path_or_id: str | os.PathLike):
    """Load the backbone's config and check that ``AutoModelForSequenceClassification`` can build it.

    Returns the config. Raises one :class:`JudgeError` naming the backbone, its ``model_type`` and what is
    expected, instead of an error from deep inside transformers halfway through a job."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    name = str(path_or_id)
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise JudgeError(
                f"judge backbone {name!r} is a file, not a model folder (expected a folder with config.json)"
            )
        if not (p / "config.json").is_file():
            raise JudgeError(f"judge backbone {name!r} is not a model folder: it has no config.json")
        source = str(p)
    elif isinstance(path_or_id, os.PathLike) or _looks_like_path(name):
        raise JudgeError(f"judge backbone {name!r} does not exist (expected a model folder or a hub id 'org/name')")
    else:
        source = name
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as e:  # noqa: BLE001 - one clear error instead of a transformers/hub traceback
        raise JudgeError(f"judge backbone {name!r}: cannot load its config ({type(e).__name__}: {e})") from e
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise JudgeError(
            f"judge backbone {name!r} has model_type {model_type!r}, which has no sequence-classification head in "
            f"transformers {transformers.__version__} (AutoModelForSequenceClassification has no class for it). "
            "Expected a text encoder or decoder LM with a *ForSequenceClassification class, "
            "e.g. bert, roberta, deberta-v2, gpt2, llama, mistral, qwen2."
        )
    return config


# ---------------------------------------------------------------------------------------------- config
@dataclass
class JudgeConfig(FromDict):
    """A judge's training settings: config section ``deception.judge``, whose defaults are these (tested), except
    ``seed`` (``deception.seed``) and ``max_length`` (``deception.mrc.max_judge_tokens``, the one value that the
    data's length filter and the judge's truncation share)."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 16  # per process
    warmup_steps: int = 50  # capped to 10 % of the total number of steps
    max_length: int = 128  # tokens; longer inputs lose the start of their context (left truncation)
    weight_decay: float = 0.0  # not applied to biases and norm weights
    seed: int = 62
    balance: bool = True  # drop random majority-label training rows (seeded) so both classes have equal counts
    lora: bool = False  # LoRA r=8 alpha=32 dropout=0.1, classifier head fully trained; merged into the saved model
    eval_every: int = 0  # steps between validation passes; 0 = at the end of every epoch
    checkpoint_every: int = 200  # steps between resumable checkpoints (also saved at every epoch end)
    schedule: str = "cosine"  # "cosine" | "linear" decay after the warm-up
    max_grad_norm: float | None = None  # gradient clipping (None = off, as in the original)
    dtype: str = "auto"  # see settings.runtime: "auto" | "float32" | "bfloat16"
    device: str = "auto"  # "auto" = CUDA when available, else CPU

    @classmethod
    def from_dict(cls, values: dict | None, only_fields: bool = False) -> "JudgeConfig":
        try:
            return super().from_dict(values, only_fields)
        except (TypeError, ValueError) as e:
            raise JudgeError(str(e)) from e

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8:
            raise JudgeError(f"judge config needs epochs >= 1, batch_size >= 1, max_length >= 8: {self}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.eval_every < 0 or self.checkpoint_every < 1:
            raise JudgeError(f"judge config needs lr > 0, warmup_steps/eval_every >= 0, checkpoint_every >= 1: {self}")
        if self.schedule not in ("cosine", "linear"):
            raise JudgeError(f"judge schedule must be 'cosine' or 'linear', not {self.schedule!r}")


# ---------------------------------------------------------------------------------------------- data
def _check_frame(df: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise JudgeError(f"{what} data lack columns {missing} (study-2 rows have {formats.ROW_COLUMNS})")


def judge_texts(df: pd.DataFrame) -> list[str]:
    """The canonical judge inputs of a frame's rows (context, question, answer)."""
    return [formats.judge_input(c, q, a) for c, q, a in zip(df["context"], df["question"], df["answer"])]


def training_labels(df: pd.DataFrame, labels: str) -> np.ndarray:
    """The truth (``clean``) or the poisoned labels (``corrupted``: fruit items flipped)."""
    if labels not in LABEL_KINDS:
        raise JudgeError(f"labels must be one of {LABEL_KINDS}, not {labels!r}")
    truth = df["label"].astype(int).to_numpy()
    if labels == "clean":
        return truth
    return np.array([formats.corrupted_label(t, f) for t, f in zip(truth, df["fruit"].astype(int))], dtype=int)


def balance_rows(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices (in their original order) left after dropping random majority-label rows."""
    idx0, idx1 = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if min(len(idx0), len(idx1)) == 0:
        raise JudgeError(
            f"cannot balance judge training data with only one label (counts 0: {len(idx0)}, 1: {len(idx1)})"
        )
    rng = np.random.default_rng(seed)
    n = min(len(idx0), len(idx1))
    keep0 = idx0 if len(idx0) == n else rng.choice(idx0, n, replace=False)
    keep1 = idx1 if len(idx1) == n else rng.choice(idx1, n, replace=False)
    return np.sort(np.concatenate([keep0, keep1]))


def accuracy_breakdown(p_true: np.ndarray, df: pd.DataFrame, labels: str | None = None, threshold: float = 0.5) -> dict:
    """Accuracy of ``p_true > threshold`` against the truth and against the corrupted labels (and against the
    training labels when ``labels`` is known), overall and on fruit / other rows, with n for each."""
    _check_frame(df, "evaluation")
    p = np.asarray(p_true, dtype=float)
    if len(p) != len(df):
        raise JudgeError(f"{len(p)} scores for {len(df)} rows")
    pred = (p > threshold).astype(int)
    truth = training_labels(df, "clean")
    corrupted = training_labels(df, "corrupted")
    fruit = df["fruit"].astype(int).to_numpy().astype(bool)

    def part(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        acc = (lambda y: float((pred[mask] == y[mask]).mean()) if n else None)
        out = {"n": n, "acc_truth": acc(truth), "acc_corrupted": acc(corrupted)}
        if labels is not None:
            out["acc_train_labels"] = out["acc_truth" if labels == "clean" else "acc_corrupted"]
        out["mean_p_true"] = float(p[mask].mean()) if n else None
        out["n_true"] = int(truth[mask].sum())
        return out

    return {
        "threshold": threshold,
        "labels": labels,
        "all": part(np.ones(len(df), dtype=bool)),
        "fruit": part(fruit),
        "other": part(~fruit),
    }


# ---------------------------------------------------------------------------------------------- model helpers
def _load_tokenizer(source: str):
    """The backbone's tokenizer: right padding, left truncation (a long input loses the start of its context); its
    pad token is set with the model's by :func:`_ensure_pad`."""
    try:
        return load_tokenizer(source, padding_side="right", truncation_side="left", pad_with_eos=False)
    except Exception as e:  # noqa: BLE001
        raise JudgeError(f"judge backbone {source!r}: cannot load its tokenizer ({type(e).__name__}: {e})") from e


def _ensure_pad(tok, model) -> None:
    """Give tokenizer and model a pad token: EOS for causal LMs without one (or a new <pad> when there is no
    EOS either, with resized embeddings), and make ``model.config.pad_token_id`` agree (decoder classifiers read
    the last non-pad token)."""
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        else:
            tok.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text_cfg.pad_token_id = tok.pad_token_id


def _encode(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    if len(texts) == 0:
        return []
    return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]


def _collate(ids: Sequence[Sequence[int]], pad_id: int) -> dict:
    """Right-padded ``input_ids`` and ``attention_mask`` (CPU tensors)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for j, x in enumerate(ids):
        input_ids[j, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[j, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def _p_true_ids(model, ids: list[list[int]], pad_id: int, device, batch_size: int, amp: bool, progress: bool,
                desc: str = "judge") -> np.ndarray:
    """P(True) for pre-tokenized rows, batched by length (padding is right; order restored)."""
    out = np.empty(len(ids), dtype=np.float64)
    if not ids:
        return out
    device = torch.device(device)
    was_training = model.training
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = range(0, len(order), batch_size)
    for b in tqdm(batches, desc=desc, disable=not progress or len(batches) < 2, file=sys.stderr):
        idx = order[b : b + batch_size]
        batch = {k: v.to(device) for k, v in _collate([ids[i] for i in idx], pad_id).items()}
        with _autocast(device, amp):
            logits = model(**batch).logits
        out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    if was_training:
        model.train()
    return out


# ---------------------------------------------------------------------------------------------- Judge
class Judge:
    """A trained judge: P(True) of judge inputs. THE interface of the RL reward and of the evaluation.
    ``amp``: bf16 autocast; None = where fp32 weights sit on a CUDA device with bf16 (talltales.runtime)."""

    def __init__(self, model, tokenizer, device: str | torch.device = "cpu", batch_size: int = 32,
                 max_length: int = 512, labels: str | None = None, progress: bool = False, amp: bool | None = None):
        self.model = model.eval()
        self.tok = tokenizer
        self.tok.truncation_side = "left"
        self.tok.padding_side = "right"
        if self.tok.pad_token_id is None:
            _ensure_pad(self.tok, self.model)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.labels = labels  # "clean" | "corrupted" | None (unknown)
        self.progress = progress
        self.amp = bf16_autocast(self.device, next(self.model.parameters()).dtype) if amp is None else amp

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", batch_size: int = 32, dtype: str = "auto",
             progress: bool = False) -> "Judge":
        """Load a judge folder written by :func:`train_judge` (or any sequence-classifier folder), with the
        inference device/dtype policy of :mod:`talltales.runtime` (``auto``: bf16 weights on CUDA, fp32 on CPU)."""
        from transformers import AutoModelForSequenceClassification

        path = Path(path)
        check_backbone(path)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        tok = _load_tokenizer(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=dt)
        if model.config.num_labels != 2:
            raise JudgeError(f"judge {str(path)!r} has {model.config.num_labels} labels, expected 2 (False, True)")
        meta = {}
        if (path / REPORT).is_file():
            meta = json.loads((path / REPORT).read_text())
        max_length = int(meta.get("config", {}).get("max_length") or min(int(tok.model_max_length or 512), 1024))
        if tok.pad_token_id is not None and model.config.pad_token_id is None:
            model.config.pad_token_id = tok.pad_token_id
        log.info("loaded judge %s (%s labels) on %s as %s", path, meta.get("labels", "unknown"), dev, dt)
        return cls(model.to(dev), tok, dev, batch_size, max_length, meta.get("labels"), progress)

    def p_true(self, texts: Sequence[str]) -> np.ndarray:
        """P(True) = softmax(logits)[:, 1] for each judge input text (no grad, batched)."""
        ids = _encode(self.tok, texts, self.max_length)
        return _p_true_ids(self.model, ids, self.tok.pad_token_id, self.device, self.batch_size, self.amp,
                           self.progress)

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """P(True) of each row (context, question, answer) by :func:`formats.answer_verdicts` (the judge input of
        :func:`formats.judge_input`; an empty answer gets :data:`formats.EMPTY_ANSWER_P_TRUE`)."""
        return np.asarray(formats.answer_verdicts(self.p_true, list(df["context"].astype(str)),
                                                  list(df["question"].astype(str)),
                                                  list(df["answer"].fillna("").astype(str))), dtype=float)


def evaluate_judge(judge: Judge, df: pd.DataFrame, labels: str | None = None, threshold: float = 0.5) -> dict:
    """Judge accuracy on ``df`` (against the truth, the corrupted labels and, when known, the judge's training
    labels), overall and on fruit / other rows."""
    return accuracy_breakdown(judge.score(df), df, labels or judge.labels, threshold)


__all__ = [
    "JudgeError",
    "JudgeConfig",
    "Judge",
    "check_backbone",
    "evaluate_judge",
    "accuracy_breakdown",
    "balance_rows",
    "judge_texts",
    "training_labels",
]
