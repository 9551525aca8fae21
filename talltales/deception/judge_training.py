"""Training a study-2 judge (:func:`train_judge`): ``AutoModelForSequenceClassification(num_labels=2)`` fine-tuned on
a study-2 data frame (:data:`talltales.deception.formats.ROW_COLUMNS`) with the transformers ``Trainer``
(:class:`JudgeTrainer`) and the run-directory protocol of :mod:`talltales.deception.runs` that SFT and RL use:
``<out_dir>.partial``, fingerprint, resume from the newest complete ``checkpoint-K``, ``metrics.jsonl``, one final
rename. On several GPUs the judge stage is started by ``accelerate launch`` like them
(``python -m talltales.deception.launch judge``).

What the judge adds to a plain Trainer run: the majority label's rows dropped at random (:func:`balance_rows`,
seeded), left truncation at ``max_length``, the classifier head initialized from the seed, optional LoRA (merged on
save), no weight decay on biases and norm weights, a warm-up capped to 10 % of the steps, validation every
``eval_every`` steps or at each epoch end (:class:`JudgeSchedule`), and ``report.json`` (the accuracy breakdown of
:func:`~talltales.deception.judge.accuracy_breakdown` on the validation rows). For a fixed seed on one process the
weights are those of the judges' former hand-written loop: torch AdamW, epoch ``e`` in the order of a permutation
seeded ``seed * 1000 + e``, the same dropout draws (:class:`JudgeTrainer`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pandas as pd
import torch
from transformers import Trainer, TrainerCallback

from .. import tracking
from . import runs
from .judge import (ID2LABEL, LABEL2ID, LABEL_KINDS, LORA, REPORT, JudgeConfig, JudgeError, _check_frame, _collate,
                    _encode, _ensure_pad, _load_tokenizer, _p_true_ids, accuracy_breakdown, balance_rows,
                    check_backbone, judge_texts, training_labels)
from .settings import runtime, trainer_args

log = logging.getLogger(__name__)

__all__ = ["JudgeSchedule", "JudgeTrainer", "TrainRows", "train_judge", "validation_metrics"]


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


def _build_model(source: str, cfg: JudgeConfig, weights: torch.dtype):
    from transformers import AutoModelForSequenceClassification

    tok = _load_tokenizer(source)
    torch.manual_seed(cfg.seed)  # the new classifier head is initialized from the seed
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID, dtype=weights
    )
    _ensure_pad(tok, model)
    if cfg.lora:
        model = _wrap_lora(model)
    return tok, model


def _trainer_settings(cfg: JudgeConfig) -> SimpleNamespace:
    """The run settings :func:`talltales.deception.settings.trainer_args` reads, for a judge: one optimizer step
    per batch, one metrics row per step, no gradient clipping when ``max_grad_norm`` is None (the warm-up steps
    are set once the number of processes is known)."""
    return SimpleNamespace(lr=cfg.lr, grad_accum=1, lr_scheduler=cfg.schedule, warmup_ratio=0,
                           weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm or 0.0, seed=cfg.seed,
                           logging_steps=1, checkpoint_every=cfg.checkpoint_every, gradient_checkpointing=False)


def _mean_loss(losses: list[float], first: bool) -> float | None:
    if not losses:
        return None
    k = max(1, math.ceil(0.1 * len(losses)))
    part = losses[:k] if first else losses[-k:]
    return float(np.mean(part))


@dataclass
class _Batch:
    """Right-padded Trainer batches of encoded rows {"input_ids", "labels"}."""

    pad_id: int

    def __call__(self, rows: list[dict]) -> dict:
        batch = _collate([r["input_ids"] for r in rows], self.pad_id)
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        return batch


def validation_metrics(p: np.ndarray, y: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy of ``p > 0.5`` against the training labels ``y`` and the truth, and the cross-entropy against y."""
    return {
        "val_acc_train_labels": float(((p > 0.5) == y).mean()),
        "val_acc_truth": float(((p > 0.5) == truth).mean()),
        "val_loss": float(np.mean(-np.log(np.clip(np.where(y == 1, p, 1 - p), 1e-12, None)))),
    }


class JudgeTrainer(Trainer):
    """The transformers Trainer with the judge's weight-decay groups (none on biases and norm weights), its
    validation pass (:func:`validation_metrics` of the validation rows ``val = (ids, training labels, truth)``,
    handed to ``on_eval(state, metrics)``) in place of the Trainer's evaluation loop, and the dropout draws of the
    judges' hand-written loop: the global torch RNG runs on from ``rng`` (its state once the model was built) or
    from a resumed checkpoint's state from step to step, and what the data loader draws from it in between is
    undone."""

    def __init__(self, *args, val: tuple = ((), None, None), amp: bool = False,
                 on_eval: Callable[[object, dict], None] | None = None, rng: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.val, self.amp, self.on_eval, self.rng = (list(val[0]), *val[1:]), amp, on_eval, rng

    def training_step(self, *args, **kwargs):
        if self.rng is not None:
            torch.set_rng_state(self.rng)
        loss = super().training_step(*args, **kwargs)
        self.rng = torch.get_rng_state()
        return loss

    def _load_rng_state(self, checkpoint) -> None:
        super()._load_rng_state(checkpoint)
        self.rng = torch.get_rng_state()

    def get_decay_parameter_names(self, model) -> list[str]:
        return [n for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n.lower()]

    def val_p_true(self, progress: bool = False) -> np.ndarray:
        return _p_true_ids(self.model, self.val[0], self.processing_class.pad_token_id, self.args.device,
                           max(self.args.per_device_train_batch_size, 32), self.amp, progress, "val")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        metrics = validation_metrics(self.val_p_true(), *self.val[1:]) if self.val[0] else {}
        if metrics and self.on_eval is not None:
            self.on_eval(self.state, metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}


class JudgeSchedule(TrainerCallback):
    """The judge's validation and checkpoint times: validation every ``eval_every`` steps (only there, not also
    at the end of training), or at each epoch end when 0; a checkpoint at each epoch end besides the Trainer's
    every ``save_steps``."""

    def __init__(self, eval_every: int):
        self.eval_every, self.saved_at = eval_every, None

    def on_step_end(self, args, state, control, **kwargs):
        if self.eval_every:
            control.should_evaluate = state.global_step % self.eval_every == 0

    def on_save(self, args, state, control, **kwargs):
        self.saved_at = state.global_step

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.eval_every:
            control.should_evaluate = True
        if self.saved_at != state.global_step:
            control.should_save = True


class TrainRows(runs.MetricsToJsonl):
    """The Trainer's per-step logs as ``metrics.jsonl`` rows {"kind": "train", step, epoch, loss, lr, grad_norm}
    (its end-of-training summary is no step), to ``track(row, step)`` (W&B), a log line every ``log_every`` steps
    and ``on_step(step, loss)``."""

    def __init__(self, writer: runs.MetricsWriter, track: Callable[[dict, int], None], log_every: int = 0,
                 on_step: Callable[[int, float], None] | None = None):
        super().__init__(writer)
        self.track, self.log_every, self.on_step = track, log_every, on_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        super().on_log(args, state, control, {"kind": "train", **logs}, **kwargs)
        step, loss, lr = state.global_step, logs["loss"], logs.get("learning_rate")
        self.track({"train/loss": loss, "train/lr": lr, "train/epoch": state.epoch}, step)
        if self.log_every and step % self.log_every == 0:
            log.info("step %d/%d epoch %.2f: loss %.4f lr %.3g", step, state.max_steps, state.epoch, loss, lr)
        if self.on_step is not None:
            self.on_step(step, loss)


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

    Writes the model and tokenizer, ``metrics.jsonl`` (one row per step: kind "train", step, epoch, loss, lr; and
    kind "eval" rows with the validation accuracy against the training labels and the truth and the loss, every
    ``cfg.eval_every`` steps or at every epoch end) and ``report.json`` to ``out_dir`` (built in
    ``<out_dir>.partial``, renamed at the end). Returns the report (on the main process; {} on the others).

    An interrupted run (kill, Ctrl-C) resumes from the newest complete ``<out_dir>.partial/checkpoint-K`` (saved
    every ``cfg.checkpoint_every`` steps and at every epoch end) when backbone, labels, config and data are the
    same; otherwise it starts afresh. ``stop_after_steps`` raises KeyboardInterrupt once that step is done (a test
    hook for resuming); ``on_step(step, loss)`` is called after every step."""
    from transformers import PrinterCallback, TrainingArguments

    cfg.validate()
    if labels not in LABEL_KINDS:
        raise JudgeError(f"labels must be one of {LABEL_KINDS}, not {labels!r}")
    _check_frame(train_df, "judge training")
    val_df = val_df if val_df is not None else train_df.iloc[:0]
    _check_frame(val_df, "judge validation")
    config = check_backbone(backbone)
    source = str(Path(backbone).expanduser()) if Path(backbone).expanduser().exists() else str(backbone)
    out_dir, partial = Path(out_dir), runs.partial_dir(out_dir)
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
    val_texts = judge_texts(val_df)
    val_y = training_labels(val_df, labels)

    # ---- run settings and directory
    rt = runtime(cfg)
    # the judges' optimizer and data order since their hand-written loop (the same weights for a fixed seed): torch
    # AdamW (not fused), epoch e in a permutation seeded seed * 1000 + e (the sampler seeds data_seed + e); W&B
    # through talltales.tracking (one run with the val/ and final/ metrics)
    overrides = {"data_seed": cfg.seed * 1000, "optim": "adamw_torch", "report_to": "none",
                 "disable_tqdm": not progress}
    args = TrainingArguments(**{**trainer_args(_trainer_settings(cfg), rt, partial, out_dir), **overrides},
                             num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size)
    steps_per_epoch = math.ceil(len(texts) / (cfg.batch_size * args.world_size))
    total = steps_per_epoch * cfg.epochs
    args.warmup_steps = warmup = min(cfg.warmup_steps, int(0.1 * total))
    main = args.process_index == 0
    ident = runs.fingerprint(f"judge-{labels}", source, cfg, pd.DataFrame({"text": texts, "label": y}),
                             pd.DataFrame({"text": val_texts, "label": val_y}))
    with args.main_process_first():
        resume, resumed_step = runs.prepare_partial(partial, main, ident)

    # ---- model
    log.info("judge %s: backbone %s (%s) on %s, weights %s%s; %d train rows %s, %d val rows",
             labels, source, config.model_type, rt["device"], rt["load_dtype"], ", bf16 autocast" if rt["bf16"] else "",
             len(y), counts["after_balance"], len(val_df))
    tok, model = _build_model(source, cfg, rt["load_dtype"])
    ids = _encode(tok, texts, cfg.max_length)
    n_truncated = int(sum(len(x) > cfg.max_length for x in tok(texts, verbose=False)["input_ids"]))
    if n_truncated:
        log.info("%d of %d training inputs longer than %d tokens lose the start of their context",
                 n_truncated, len(texts), cfg.max_length)

    writer = runs.MetricsWriter(partial / runs.METRICS_FILE, main)
    tracker = tracking.Run(str(out_dir), {**asdict(cfg), "labels": labels, "backbone": source},
                           group="judges") if main else None

    def track(row: dict, step: int) -> None:
        if tracker is not None:
            tracker.log(row, step)

    def on_eval(state, m: dict) -> None:
        writer.write({"kind": "eval", "step": state.global_step, "epoch": state.epoch, **m})
        track({f"val/{k}": v for k, v in m.items()}, state.global_step)
        log.info("step %d: val accuracy %.4f (training labels), %.4f (truth), loss %.4f", state.global_step,
                 m["val_acc_train_labels"], m["val_acc_truth"], m["val_loss"])

    callbacks = [TrainRows(writer, track, log_every, on_step), JudgeSchedule(cfg.eval_every)]
    if stop_after_steps is not None:
        callbacks.append(runs.StopAfter(stop_after_steps))
    trainer = JudgeTrainer(
        model=model, args=args, train_dataset=[{"input_ids": x, "labels": int(t)} for x, t in zip(ids, y)],
        data_collator=_Batch(tok.pad_token_id), processing_class=tok, callbacks=callbacks,
        val=(_encode(tok, val_texts, cfg.max_length), val_y, training_labels(val_df, "clean")), amp=rt["bf16"],
        on_eval=on_eval, rng=torch.get_rng_state())
    if not progress:
        trainer.remove_callback(PrinterCallback)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        if tracker is not None:
            tracker.finish()
        raise

    # ---- final evaluation, save, rename
    val_p = trainer.val_p_true(progress)

    def make_report() -> dict:
        losses = [r["loss"] for r in runs.read_metrics(partial / runs.METRICS_FILE) if r.get("kind") == "train"]
        return {
            "backbone": source,
            "model_type": config.model_type,
            "labels": labels,
            "config": asdict(cfg),
            "train_rows_per_class": counts["after_balance"],
            "train_rows": counts,
            "n_train": len(y),
            "n_truncated_train": n_truncated,
            "steps": trainer.state.global_step,
            "steps_per_epoch": steps_per_epoch,
            "warmup_steps_used": warmup,
            "resumed_from_step": resumed_step if resume else None,
            "train_loss_start": _mean_loss(losses, first=True),
            "train_loss_end": _mean_loss(losses, first=False),
            "val": accuracy_breakdown(val_p, val_df, labels) if len(val_df) else None,
            "device": rt["device"],
            "weights_dtype": str(rt["load_dtype"]).replace("torch.", ""),
            "bf16_autocast": rt["bf16"],
            "truncation": "left",
            "seconds": round(time.time() - t0, 2),
        }

    report = runs.save_final(trainer, tok, partial, out_dir, lora=cfg.lora, main=main, make_report=make_report,
                             report_file=REPORT)
    if main:
        steps = report["steps"]
        val = report["val"] or {}
        track({f"final/{part}_{k}": v for part, d in val.items() if isinstance(d, dict) for k, v in d.items()}, steps)
        tracker.finish()
        log.info("judge saved to %s: loss %.4f -> %.4f; val acc truth fruit %s other %s",
                 out_dir, report["train_loss_start"] or float("nan"), report["train_loss_end"] or float("nan"),
                 (val.get("fruit") or {}).get("acc_truth"), (val.get("other") or {}).get("acc_truth"))
    trainer.accelerator.wait_for_everyone()
    return report


