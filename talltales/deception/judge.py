"""Study-2 judges: sequence classifiers that say whether an answer is true given its context (spec §2).

* :func:`check_backbone` fails early, with one clear :class:`JudgeError`, when a backbone cannot be a
  sequence classifier (missing folder, no ``config.json``, or a ``model_type`` with no
  ``*ForSequenceClassification`` class in transformers).
* :func:`train_judge` fine-tunes ``AutoModelForSequenceClassification(num_labels=2)`` on a study-2 data frame
  (:data:`talltales.deception.formats.ROW_COLUMNS`) with a plain PyTorch loop. ``labels="clean"`` trains on the
  truth, ``labels="corrupted"`` on :func:`~talltales.deception.formats.corrupted_label` (fruit items flipped).
  The input text is :func:`~talltales.deception.formats.judge_input`, the one formatter shared with the RL reward
  and the evaluation (spec §10.11). Long inputs are truncated on the *left* (the start of the context), so the
  question and the judged answer are always seen (§10.12).
  Everything is written into ``<out_dir>.partial`` (model, tokenizer, ``metrics.jsonl``, ``report.json``, and a
  resumable ``checkpoint/`` while training), which is renamed to ``out_dir`` at the end. A rerun after an
  interruption resumes from the last checkpoint when config and training data are unchanged.
* :class:`Judge` is THE scoring interface (RL reward, evaluation): ``Judge.load(path).score(df)`` gives
  P(True) = softmax(logits)[:, 1] per row.
* :func:`evaluate_judge` reports accuracy against the truth and against the corrupted labels, on fruit and on
  other items separately (the judge-accuracy table of spec §2, measured against the truth as §10.10 asks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import tracking
from . import formats
from ..lm.hf import resolve_device, resolve_dtype

log = logging.getLogger(__name__)

LABEL_KINDS = ("clean", "corrupted")
ID2LABEL = {0: "False", 1: "True"}
LABEL2ID = {"False": 0, "True": 1}
REQUIRED_COLUMNS = ("context", "question", "answer", "label", "fruit")
LORA = dict(r=8, lora_alpha=32, lora_dropout=0.1, bias="none")  # spec §2 (peft defaults for the targets)
CHECKPOINT = "checkpoint"
METRICS = "metrics.jsonl"
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
class JudgeConfig:
    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 16
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
    dtype: str = "auto"  # weights while training: "auto" = float32 (bf16 autocast on CUDA when supported)
    device: str = "auto"  # "auto" = CUDA when available, else CPU

    @classmethod
    def from_dict(cls, d: dict | None) -> "JudgeConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise JudgeError(f"unknown judge config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

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
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source)
    except Exception as e:  # noqa: BLE001
        raise JudgeError(f"judge backbone {source!r}: cannot load its tokenizer ({type(e).__name__}: {e})") from e
    tok.truncation_side = "left"
    tok.padding_side = "right"
    return tok


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


def _collate(ids: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> dict:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for j, x in enumerate(ids):
        input_ids[j, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[j, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _use_amp(device: torch.device, weights: torch.dtype) -> bool:
    return device.type == "cuda" and weights == torch.float32 and torch.cuda.is_bf16_supported()


@torch.no_grad()
def _p_true_ids(model, ids: list[list[int]], pad_id: int, device, batch_size: int, amp: bool, progress: bool,
                desc: str = "judge") -> np.ndarray:
    """P(True) for pre-tokenized rows, batched by length (padding is right; order restored)."""
    out = np.empty(len(ids), dtype=np.float64)
    if not ids:
        return out
    was_training = model.training
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = range(0, len(order), batch_size)
    for b in tqdm(batches, desc=desc, disable=not progress or len(batches) < 2, file=sys.stderr):
        idx = order[b : b + batch_size]
        with _autocast(device, amp):
            logits = model(**_collate([ids[i] for i in idx], pad_id, device)).logits
        out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    if was_training:
        model.train()
    return out


# ---------------------------------------------------------------------------------------------- Judge
class Judge:
    """A trained judge: P(True) of judge inputs. THE interface of the RL reward and of the evaluation."""

    def __init__(self, model, tokenizer, device: str | torch.device = "cpu", batch_size: int = 32,
                 max_length: int = 512, labels: str | None = None, progress: bool = False):
        self.model = model.eval()
        self.tok = tokenizer
        self.tok.truncation_side = "left"
        self.tok.padding_side = "right"
        if self.tok.pad_token_id is None:
            _ensure_pad(self.tok, self.model)
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.batch_size = batch_size
        self.max_length = max_length
        self.labels = labels  # "clean" | "corrupted" | None (unknown)
        self.progress = progress
        self.amp = _use_amp(self.device, next(self.model.parameters()).dtype)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", batch_size: int = 32, dtype: str = "auto",
             progress: bool = False) -> "Judge":
        """Load a judge folder written by :func:`train_judge` (or any sequence-classifier folder)."""
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
        """P(True) of each row (context, question, answer) through :func:`formats.judge_input`."""
        return self.p_true(judge_texts(df))


def evaluate_judge(judge: Judge, df: pd.DataFrame, labels: str | None = None, threshold: float = 0.5) -> dict:
    """Judge accuracy on ``df`` (against the truth, the corrupted labels and, when known, the judge's training
    labels), overall and on fruit / other rows."""
    return accuracy_breakdown(judge.score(df), df, labels or judge.labels, threshold)


# ---------------------------------------------------------------------------------------------- training
def _fingerprint(backbone: str, labels: str, cfg: JudgeConfig, texts: list[str], y: np.ndarray) -> str:
    semantic = {k: v for k, v in asdict(cfg).items() if k not in ("eval_every", "checkpoint_every", "device")}
    h = hashlib.sha256(json.dumps({"backbone": backbone, "labels": labels, "cfg": semantic}, sort_keys=True).encode())
    for t, l in zip(texts, y):
        h.update(t.encode())
        h.update(b"\x00%d\x01" % int(l))
    return h.hexdigest()


def _trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(partial: Path, model, opt, sched, step: int, fingerprint: str) -> None:
    tmp = partial / (CHECKPOINT + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(
        {
            "step": step,
            "fingerprint": fingerprint,
            "model": _trainable_state(model),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        tmp / "state.pt",
    )
    _replace_dir(tmp, partial / CHECKPOINT)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is first set aside as ``dst.old`` (the fallback a killed
    process leaves behind) and removed once the move is done."""
    old = dst.parent / (dst.name + ".old")
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
    src.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            break
    return rows


def _wrap_lora(model):
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as e:
        raise JudgeError("judge config has lora: true, but peft is not installed: pip install peft") from e
    # the classifier head (any top-level module outside the backbone: classifier, score, classification_head)
    # is trained in full, as the original's `score` head
    prefix = getattr(model, "base_model_prefix", "")
    heads = [n for n, m in model.named_children() if n != prefix and any(True for _ in m.parameters())]
    try:
        return get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, modules_to_save=heads, **LORA))
    except ValueError as e:  # e.g. no default target modules for this model_type
        raise JudgeError(f"cannot put LoRA adapters on a {model.config.model_type!r} judge: {e}") from e


def _build_model(source: str, cfg: JudgeConfig, device: torch.device, weights: torch.dtype):
    from transformers import AutoModelForSequenceClassification

    tok = _load_tokenizer(source)
    torch.manual_seed(cfg.seed)  # the new classifier head is initialized from the seed
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID, dtype=weights
    )
    _ensure_pad(tok, model)
    if cfg.lora:
        model = _wrap_lora(model)
    return tok, model.to(device)


def _optimizer(model, cfg: JudgeConfig):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _scheduler(opt, cfg: JudgeConfig, warmup: int, total: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    make = get_cosine_schedule_with_warmup if cfg.schedule == "cosine" else get_linear_schedule_with_warmup
    return make(opt, num_warmup_steps=warmup, num_training_steps=total)


def _mean_loss(losses: list[float], first: bool) -> float | None:
    if not losses:
        return None
    k = max(1, math.ceil(0.1 * len(losses)))
    part = losses[:k] if first else losses[-k:]
    return float(np.mean(part))


def train_judge(
    backbone: str | os.PathLike,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame | None,
    labels: str,
    cfg: JudgeConfig,
    out_dir: str | os.PathLike,
    log_every: int = 50,
    progress: bool = True,
    stop_after_steps: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Fine-tune ``backbone`` as a two-label judge on ``train_df`` with ``labels`` ("clean" | "corrupted").

    Writes the model and tokenizer (``save_pretrained``), ``metrics.jsonl`` (one row per step: kind "train", step,
    epoch, loss, lr; and kind "eval" rows with the validation accuracy against the training labels and the truth,
    every ``cfg.eval_every`` steps or at every epoch end) and ``report.json`` to ``out_dir`` (built in
    ``<out_dir>.partial``, renamed at the end). Returns the report.

    An interrupted run (kill, Ctrl-C) resumes from ``<out_dir>.partial/checkpoint`` (saved every
    ``cfg.checkpoint_every`` steps and at every epoch end) when backbone, labels, config and training rows are the
    same; otherwise it starts over. ``stop_after_steps`` raises KeyboardInterrupt once that global step is done
    (a test hook for resuming); ``on_step(step, loss)`` is called after every step."""
    cfg.validate()
    if labels not in LABEL_KINDS:
        raise JudgeError(f"labels must be one of {LABEL_KINDS}, not {labels!r}")
    _check_frame(train_df, "judge training")
    val_df = val_df if val_df is not None else train_df.iloc[:0]
    _check_frame(val_df, "judge validation")
    config = check_backbone(backbone)
    source = str(Path(backbone).expanduser()) if Path(backbone).expanduser().exists() else str(backbone)
    out_dir = Path(out_dir)
    partial = out_dir.parent / (out_dir.name + ".partial")
    t0 = time.time()

    # ---- data
    y_all = training_labels(train_df, labels)
    texts_all = judge_texts(train_df)
    keep = balance_rows(y_all, cfg.seed) if cfg.balance else np.arange(len(y_all))
    texts = [texts_all[i] for i in keep]
    y = y_all[keep]
    fruit = train_df["fruit"].astype(int).to_numpy()[keep]
    counts = {
        "before_balance": {str(k): int((y_all == k).sum()) for k in (0, 1)},
        "after_balance": {str(k): int((y == k).sum()) for k in (0, 1)},
        "fruit_after_balance": {str(k): int(((y == k) & (fruit == 1)).sum()) for k in (0, 1)},
    }
    fp = _fingerprint(source, labels, cfg, texts, y)

    # ---- model
    device = resolve_device(cfg.device)
    weights = torch.float32 if cfg.dtype == "auto" else resolve_dtype(cfg.dtype, device)
    amp = _use_amp(device, weights)
    log.info("judge %s: backbone %s (%s) on %s, weights %s%s; %d train rows %s, %d val rows",
             labels, source, config.model_type, device, weights, ", bf16 autocast" if amp else "",
             len(y), counts["after_balance"], len(val_df))
    tok, model = _build_model(source, cfg, device, weights)
    pad_id = tok.pad_token_id
    ids = _encode(tok, texts, cfg.max_length)
    n_truncated = int(sum(len(x) > cfg.max_length for x in tok(texts, verbose=False)["input_ids"]))
    if n_truncated:
        log.info("%d of %d training inputs longer than %d tokens lose the start of their context",
                 n_truncated, len(texts), cfg.max_length)
    val_ids = _encode(tok, judge_texts(val_df), cfg.max_length)
    val_y = training_labels(val_df, labels)

    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = min(cfg.warmup_steps, int(0.1 * total))
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, warmup, total)

    # ---- resume or start over
    step = 0
    resumed_from = None
    # (checkpoint.old is the previous one while a new one is being renamed into place)
    ckpt_file = next((f for f in (partial / CHECKPOINT / "state.pt", partial / (CHECKPOINT + ".old") / "state.pt")
                      if f.is_file()), None)
    if ckpt_file is not None:
        state = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fp:
            log.warning("checkpoint in %s is from another config or data; starting over", partial)
        else:
            missing = set(_trainable_state(model)) - set(state["model"])
            if missing:
                raise JudgeError(f"checkpoint {ckpt_file} lacks parameters {sorted(missing)[:5]}")
            model.load_state_dict(state["model"], strict=False)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            step = resumed_from = int(state["step"])
            log.info("resuming from step %d of %d (%s)", step, total, ckpt_file)
    metrics_path = partial / METRICS
    if resumed_from is None:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        metrics_rows = []
    else:  # steps after the checkpoint are redone: drop their rows
        metrics_rows = [r for r in _read_metrics(metrics_path) if r.get("step", 0) <= step]
    tmp = metrics_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in metrics_rows))
    tmp.replace(metrics_path)
    losses = {r["step"]: r["loss"] for r in metrics_rows if r.get("kind") == "train"}

    def evaluate(at: int, epoch: int, metrics) -> None:
        if not val_ids:
            return
        p = _p_true_ids(model, val_ids, pad_id, device, max(cfg.batch_size, 32), amp, False)
        row = {
            "kind": "eval", "step": at, "epoch": epoch,
            "val_acc_train_labels": float(((p > 0.5) == val_y).mean()),
            "val_acc_truth": float(((p > 0.5) == training_labels(val_df, "clean")).mean()),
            "val_loss": float(np.mean(-np.log(np.clip(np.where(val_y == 1, p, 1 - p), 1e-12, None)))),
        }
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        tracker.log({f"val/{k}": v for k, v in row.items() if k.startswith("val_")}, at)
        log.info("step %d: val accuracy %.4f (training labels), %.4f (truth), loss %.4f",
                 at, row["val_acc_train_labels"], row["val_acc_truth"], row["val_loss"])

    # ---- loop
    tracker = tracking.Run(str(out_dir), {**asdict(cfg), "labels": labels, "backbone": source}, group="judges")
    model.train()
    bar = tqdm(total=total, initial=step, desc=f"train {labels} judge", disable=not progress, file=sys.stderr)
    with open(metrics_path, "a") as metrics:
        for epoch in range(step // steps_per_epoch, cfg.epochs):
            g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            perm = torch.randperm(len(ids), generator=g).tolist()
            for b in range(step - epoch * steps_per_epoch, steps_per_epoch):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                batch = _collate([ids[i] for i in idx], pad_id, device)
                target = torch.tensor(y[idx], dtype=torch.long, device=device)
                with _autocast(device, amp):
                    logits = model(**batch).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    trainable = [p for p in model.parameters() if p.requires_grad]
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                lr = sched.get_last_lr()[0]
                opt.step()
                sched.step()
                step += 1
                lv = float(loss.detach())
                losses[step] = lv
                metrics.write(json.dumps({"kind": "train", "step": step, "epoch": epoch, "loss": lv, "lr": lr}) + "\n")
                tracker.log({"train/loss": lv, "train/lr": lr, "train/epoch": epoch}, step)
                metrics.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4f}", refresh=False)
                if log_every and step % log_every == 0:
                    log.info("step %d/%d epoch %d: loss %.4f lr %.3g", step, total, epoch, lv, lr)
                if on_step is not None:
                    on_step(step, lv)
                epoch_end = b == steps_per_epoch - 1
                if (step % cfg.eval_every == 0) if cfg.eval_every else epoch_end:
                    evaluate(step, epoch, metrics)
                if step % cfg.checkpoint_every == 0 or epoch_end:
                    _save_checkpoint(partial, model, opt, sched, step, fp)
                if stop_after_steps is not None and step >= stop_after_steps:
                    bar.close()
                    tracker.finish()
                    raise KeyboardInterrupt(f"stop_after_steps={stop_after_steps}")
    bar.close()

    # ---- final evaluation, save, rename
    model.eval()
    val_p = _p_true_ids(model, val_ids, pad_id, device, max(cfg.batch_size, 32), amp, progress, "val")
    loss_list = [losses[k] for k in sorted(losses)]
    report = {
        "backbone": source,
        "model_type": config.model_type,
        "labels": labels,
        "config": asdict(cfg),
        "train_rows_per_class": counts["after_balance"],
        "train_rows": counts,
        "n_train": len(y),
        "n_truncated_train": n_truncated,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps_used": warmup,
        "resumed_from_step": resumed_from,
        "train_loss_start": _mean_loss(loss_list, first=True),
        "train_loss_end": _mean_loss(loss_list, first=False),
        "val": accuracy_breakdown(val_p, val_df, labels) if len(val_df) else None,
        "device": str(device),
        "weights_dtype": str(weights).replace("torch.", ""),
        "bf16_autocast": amp,
        "truncation": "left",
        "seconds": round(time.time() - t0, 2),
    }
    to_save = model.merge_and_unload() if cfg.lora else model
    to_save.save_pretrained(partial)
    tok.save_pretrained(partial)
    (partial / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    for name in (CHECKPOINT, CHECKPOINT + ".old", CHECKPOINT + ".tmp"):
        shutil.rmtree(partial / name, ignore_errors=True)
    _replace_dir(partial, out_dir)
    val = report["val"] or {}
    tracker.log({f"final/{part}_{k}": v for part, d in val.items() if isinstance(d, dict) for k, v in d.items()}, step)
    tracker.finish()
    log.info("judge saved to %s: loss %.4f -> %.4f; val acc truth fruit %s other %s",
             out_dir, report["train_loss_start"] or float("nan"), report["train_loss_end"] or float("nan"),
             (val.get("fruit") or {}).get("acc_truth"), (val.get("other") or {}).get("acc_truth"))
    return report


__all__ = [
    "JudgeError",
    "JudgeConfig",
    "Judge",
    "check_backbone",
    "train_judge",
    "evaluate_judge",
    "accuracy_breakdown",
    "balance_rows",
    "judge_texts",
    "training_labels",
]
