"""Policy training for study 2: supervised fine-tuning on demonstrations and RL against a (corrupted) judge.

* :func:`sft` trains a causal LM on demonstrations ``formats.qa_prompt(context, question) + " " + answer + EOS``
  with the loss on the answer tokens (and the EOS) only: prompt tokens and pad tokens are masked with -100
  (:func:`encode_demo`, :class:`DemoCollator`; pads are found from the attention mask, so this holds for left
  and right padding and when the pad token is the EOS token). It is used for the warm-up of the RL policies
  (correct answers) and for SFT on poisoned demonstrations (the caller chooses the rows). It runs on the
  transformers ``Trainer`` (DeepSpeed through ``accelerate launch``, checkpoints, resumption).
* :func:`rl` fine-tunes a policy with trl's ``RLOOTrainer`` (default) or ``GRPOTrainer`` on a Python reward
  ``reward_fn(contexts, questions, completions) -> list[float]``. The KL penalty (``kl_beta``, a fixed coefficient;
  trl has no adaptive KL controller) is taken to the starting policy, which trl loads again from ``policy_path``
  as the reference model. Every ``eval_every`` steps the mean reward of **greedy** completions on the held-out
  prompts is measured (a TrainerCallback, :func:`_held_out_reward_callback`); the checkpoint with the highest held-out reward (evaluations at
  steps >= ``eval_every``; the step-0 value is only reported, as trlx did) is kept as ``out_dir/best``, the final
  policy as ``out_dir/last``.
  Differences from the original trlx PPO run (spec §4): RLOO/GRPO need no value head (trl 1.16 has no PPO), the
  KL coefficient is fixed, prompts are never truncated (the original right-truncation could cut ``Answer:``),
  and the learning rate is constant by default (no periodic cosine).

Both write into ``out_dir + ".partial"`` (trainer checkpoints every ``checkpoint_every`` steps, ``metrics.jsonl``)
and resume from the newest complete checkpoint found there (unless the config, data or start model changed: then
they start afresh); the finished result is moved to ``out_dir`` by one
rename, so ``out_dir`` is either absent or complete. ``out_dir`` then holds ``metrics.jsonl`` and
``train_report.json`` (plus, for SFT, the model and tokenizer; for RL, ``best/`` and ``last/``).

Launching: ``python -m talltales.deception.train {sft|rl} --args-json FILE`` runs either from a JSON file of
arguments; :func:`accelerate_command` gives the command line for a Snakemake rule (``accelerate launch`` with a
DeepSpeed config from ``envs/accelerate/`` when more than one GPU is used).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from talltales import tracking
from talltales.deception import formats
from talltales.deception.runs import (MetricsWriter as _Jsonl, callbacks as _callbacks, checkpoints as _checkpoints,
                                      finalize_dir as _finalize_dir, fingerprint as _fingerprint,
                                      prepare_partial as _prepare_partial, read_metrics as _read_rows_tolerant,
                                      write_json as _write_json)

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[str]], Sequence[float]]
IGNORE_INDEX = -100


# --------------------------------------------------------------------------------------------------------------------
# Configs


class _FromDict:
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, ignore: Sequence[str] = ()):
        """Build from a mapping (e.g. a config.yaml section). Keys in ``ignore`` are skipped; other unknown keys
        are an error (a typo must not silently fall back to a default)."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - set(ignore))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class SFTRunConfig(_FromDict):
    """Supervised fine-tuning on demonstrations (the loss is on answer tokens + EOS only)."""

    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 8  # per process (micro-batch); effective batch = batch_size * grad_accum * processes
    grad_accum: int = 1
    max_length: int = 256  # longer demos lose prompt tokens from the left (after BOS); the answer is kept
    warmup_ratio: float = 0.0
    lr_scheduler: str = "cosine"  # a transformers scheduler name; "cosine" is one half-cosine decay to 0 (not periodic)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 62
    checkpoint_every: int = 100  # steps (optimizer updates)
    eval_every: int = 100  # steps: loss on a fixed train sample and on the validation rows (if any)
    train_eval_rows: int = 64  # size of the fixed train sample whose loss is reported at start/end (costs 2 passes)
    logging_steps: int = 1
    gradient_checkpointing: bool = False
    lora: bool = False  # needs `peft`; the adapter is merged into the saved model
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture
    dtype: str = "auto"  # auto: fp32 weights (+ bf16 autocast on CUDA); or "float32" / "bfloat16"
    device: str = "auto"  # auto: CUDA when available, else CPU


@dataclass
class RLRunConfig(_FromDict):
    """RL against a reward function (trl RLOO or GRPO)."""

    algorithm: str = "rloo"  # "rloo" | "grpo"
    steps: int = 300  # optimizer steps
    lr: float = 1e-5
    batch_size: int = 8  # prompts per optimizer step (all processes together)
    num_generations: int = 4  # sampled completions per prompt (>= 2)
    max_new_tokens: int = 50
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter (trl default; the sampled tokens are then from the trained distribution)
    kl_beta: float = 0.05  # fixed KL coefficient to the reference (= the starting policy)
    eval_every: int = 25  # steps between held-out reward evaluations (greedy decoding)
    eval_batch_size: int = 16
    checkpoint_every: int = 50
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    lr_scheduler: str = "constant"
    weight_decay: float = 1e-6
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    seed: int = 62
    logging_steps: int = 1
    gradient_checkpointing: bool = False
    lora: bool = False  # needs `peft`; with LoRA the KL reference is the model with the adapter disabled
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] | None = None
    dtype: str = "auto"
    device: str = "auto"

    def __post_init__(self):
        if self.algorithm not in ("rloo", "grpo"):
            raise ValueError(f"RLRunConfig.algorithm must be 'rloo' or 'grpo', not {self.algorithm!r}")
        if self.num_generations < 2:
            raise ValueError("RLRunConfig.num_generations must be >= 2 (the baselines need two samples per prompt)")


# --------------------------------------------------------------------------------------------------------------------
# Demonstrations: tokenization and label masking


def encode_demo(tok, context: str, question: str, answer: str, max_length: int) -> dict[str, Any]:
    """Token ids of ``formats.demo_text(...) + EOS`` and ``n_prompt``, the number of leading tokens that belong to
    the prompt (``formats.qa_prompt``) and get no loss.

    The prompt length is the common prefix of the tokenization of the prompt alone and of the full text, so a token
    that straddles the boundary is trained on. Too long demos lose prompt tokens from the left (after a leading BOS);
    only when the answer alone is too long is the end cut (then without EOS). ``truncated`` tells either.
    """
    if tok.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token")
    prompt = formats.qa_prompt(context, question)
    full = formats.demo_text(context, question, answer)
    p_ids = tok(prompt)["input_ids"]
    ids = list(tok(full)["input_ids"])
    n = 0
    while n < min(len(p_ids), len(ids)) and p_ids[n] == ids[n]:
        n += 1
    if not ids or ids[-1] != tok.eos_token_id or n == len(ids):
        ids.append(tok.eos_token_id)
    truncated = False
    if len(ids) > max_length:
        truncated = True
        lead = 1 if tok.bos_token_id is not None and ids[0] == tok.bos_token_id and n > 0 else 0
        cut = len(ids) - max_length
        if n - lead > cut:
            ids = ids[:lead] + ids[lead + cut:]
            n -= cut
        else:  # the answer alone does not fit
            ids = ids[:max_length]
            n = min(n, max_length - 1)
    return {"input_ids": ids, "n_prompt": n, "truncated": truncated}


@dataclass
class DemoCollator:
    """Pads encoded demos (:func:`encode_demo`) into a batch: ``input_ids``, ``attention_mask``, ``position_ids``
    (counted over real tokens, so left padding gives the same positions as right padding) and ``labels`` (-100 on
    prompt and pad positions)."""

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {self.padding_side!r}")
        width = max(len(e["input_ids"]) for e in examples)
        input_ids, mask, labels = [], [], []
        for e in examples:
            ids, n = list(e["input_ids"]), int(e["n_prompt"])
            pad = width - len(ids)
            lab = [IGNORE_INDEX] * n + ids[n:]
            if self.padding_side == "right":
                input_ids.append(ids + [self.pad_token_id] * pad)
                mask.append([1] * len(ids) + [0] * pad)
                labels.append(lab + [IGNORE_INDEX] * pad)
            else:
                input_ids.append([self.pad_token_id] * pad + ids)
                mask.append([0] * pad + [1] * len(ids))
                labels.append([IGNORE_INDEX] * pad + lab)
        attn = torch.tensor(mask, dtype=torch.long)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": attn,
            "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def answer_loss(model, inputs: dict[str, Any]):
    """Mean next-token cross-entropy over the labelled (answer + EOS) tokens of a batch, computing the LM head only
    for the positions that predict them (``logits_to_keep``): with left padding the answers are at the end of every
    row, so a model with a large vocabulary (Gemma-3: 262k tokens) skips most of its head. Same value as the
    full-logits loss (tested)."""
    import inspect

    import torch

    labels = inputs["labels"]
    width = labels.shape[1]
    labelled = labels != IGNORE_INDEX
    if not bool(labelled.any()):
        raise ValueError("a batch without answer tokens (every label is masked)")
    first = int(torch.where(labelled.any(dim=1), labelled.float().argmax(dim=1), width).min())
    start = max(first, 1)  # the first position whose token is predicted
    keep = width - start + 1  # logits at positions start-1 .. width-1
    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    core = getattr(core, "module", core)  # DDP / DeepSpeed wrappers
    if "logits_to_keep" in inspect.signature(type(core).forward).parameters:
        fwd["logits_to_keep"] = keep
    logits = model(**fwd).logits[:, -keep:, :][:, :-1, :]
    target = labels[:, start:]
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)


def _answer_loss_trainer():
    from transformers import Trainer

    class AnswerLossTrainer(Trainer):
        """A transformers Trainer whose loss is :func:`answer_loss` (a per-micro-batch mean, so the Trainer scales
        it for gradient accumulation)."""

        loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_loss(model, inputs)
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerLossTrainer


def _require_columns(df, columns: Sequence[str], what: str) -> None:
    missing = set(columns) - set(df.columns)
    if missing:
        raise ValueError(f"{what} lack column(s) {sorted(missing)}")


def encode_rows(tok, rows, max_length: int) -> list[dict[str, Any]]:
    """Encode a DataFrame with ``context``, ``question``, ``answer`` columns."""
    _require_columns(rows, ("context", "question", "answer"), "demonstration rows")
    return [encode_demo(tok, str(r.context), str(r.question), str(r.answer), max_length)
            for r in rows.itertuples(index=False)]


# --------------------------------------------------------------------------------------------------------------------
# Shared machinery: devices, partial folders, metrics, interruption hook


def _runtime(cfg) -> dict[str, Any]:
    """Device and precision: fp32 on CPU; on CUDA fp32 weights with bf16 autocast (bf16 weights for a frozen LoRA
    base, or when dtype="bfloat16")."""
    import torch

    if cfg.device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, not {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA device is available")
    cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    if cfg.dtype == "auto":
        load = torch.bfloat16 if (cuda and cfg.lora) else torch.float32
    elif cfg.dtype in ("float32", "bfloat16"):
        load = getattr(torch, cfg.dtype)
    else:
        raise ValueError(f"dtype must be auto, float32 or bfloat16, not {cfg.dtype!r}")
    return {"use_cpu": not cuda, "load_dtype": load, "bf16": bool(cuda and (cfg.dtype != "float32")),
            "device": "cuda" if cuda else "cpu"}


def _common_args(cfg, rt: dict[str, Any], partial: Path, out_dir) -> dict[str, Any]:
    """TrainingArguments fields shared by SFT (transformers) and RL (trl configs extend TrainingArguments):
    optimisation, seeds, logging, checkpoints every ``cfg.checkpoint_every`` steps in ``partial``, precision and
    device from :func:`_runtime`, W&B when WANDB_PROJECT is set (talltales/tracking.py)."""
    return dict(
        output_dir=str(partial),
        learning_rate=cfg.lr,
        gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.checkpoint_every,
        save_total_limit=2,
        activation_checkpointing=cfg.gradient_checkpointing,
        bf16=rt["bf16"],
        use_cpu=rt["use_cpu"],
        report_to=tracking.report_to(),
        run_name=str(out_dir),
        disable_tqdm=False,
        remove_unused_columns=False,
    )


def _load_tokenizer(path: str, padding_side: str | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        # No new embedding row: pads are masked by position (attention mask), so pad == EOS is safe, and the EOS
        # at the end of an answer is still trained on.
        tok.pad_token = tok.eos_token
    if padding_side:
        tok.padding_side = padding_side
    return tok


def _peft_config(cfg):
    try:
        from peft import LoraConfig
    except ImportError as exc:  # pragma: no cover - peft is optional
        raise ImportError("lora=True needs the `peft` package (pip install peft)") from exc
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=cfg.lora_target_modules)


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def _merge_adapter(policy_path: str, folder: Path, dtype) -> None:
    """Turn a saved LoRA adapter folder into a full model folder (merged into the base at ``policy_path``)."""
    if not (folder / "adapter_config.json").exists():
        return
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(policy_path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    tmp = folder.with_name(folder.name + ".merged")
    merged.save_pretrained(tmp)
    for name in os.listdir(folder):  # keep the tokenizer files, best.json, ...
        if (not name.startswith("adapter_") and name != "README.md" and not (tmp / name).exists()
                and (folder / name).is_file()):
            shutil.copy2(folder / name, tmp / name)
    shutil.rmtree(folder)
    os.replace(tmp, folder)


# --------------------------------------------------------------------------------------------------------------------
# SFT


def sft(policy_path: str, rows, cfg: SFTRunConfig, out_dir: str, reference_dir: str | None = None, *,
        val_rows=None, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune ``policy_path`` on demonstrations ``rows`` (columns context, question, answer); see the module doc.

    ``reference_dir``: where to load the tokenizer from when ``policy_path`` has none (default: ``policy_path``).
    ``val_rows``: optional held-out demonstrations whose loss is logged every ``cfg.eval_every`` steps.
    ``stop_after_steps``: testing hook, raises KeyboardInterrupt after that step (resumable).
    Returns the train report (also written to ``out_dir/train_report.json``).
    """
    import random

    from transformers import AutoModelForCausalLM, TrainingArguments, set_seed

    _require_columns(rows, ("context", "question", "answer"), "demonstration rows")
    if val_rows is not None:
        _require_columns(val_rows, ("context", "question", "answer"), "validation rows")
    t0 = time.time()
    out, partial = Path(out_dir), Path(str(out_dir) + ".partial")
    rt = _runtime(cfg)
    tok_dir = policy_path if (Path(policy_path) / "tokenizer_config.json").exists() or reference_dir is None \
        else reference_dir
    tok = _load_tokenizer(tok_dir)

    args = TrainingArguments(
        **_common_args(cfg, rt, partial, out_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        eval_strategy="steps",
        eval_steps=cfg.eval_every,
        prediction_loss_only=True,
        dataloader_num_workers=0,
    )
    main = args.process_index == 0
    with args.main_process_first():
        resume, resumed_step = _prepare_partial(
            partial, main, _fingerprint("sft", policy_path, cfg, rows[["context", "question", "answer"]], val_rows))
    args.eval_on_start = resume is None

    train = encode_rows(tok, rows, cfg.max_length)
    n_trunc = sum(e["truncated"] for e in train)
    if n_trunc:
        log.warning("%d of %d demonstrations longer than %d tokens were truncated", n_trunc, len(train), cfg.max_length)
    rng = random.Random(cfg.seed)
    sample = rng.sample(train, min(cfg.train_eval_rows, len(train)))
    evals = {"train": sample}
    if val_rows is not None and len(val_rows):
        evals["val"] = encode_rows(tok, val_rows, cfg.max_length)

    set_seed(cfg.seed)  # the LoRA initialisation
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=rt["load_dtype"])
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, _peft_config(cfg))
    writer = _Jsonl(partial / "metrics.jsonl", main)
    trainer = _answer_loss_trainer()(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        data_collator=DemoCollator(tok.pad_token_id, "left"),  # answers at the end: see answer_loss
        processing_class=tok,
        callbacks=_callbacks(writer, stop_after_steps),
    )
    log.info("SFT of %s on %d demonstrations (%s%s)", policy_path, len(train), rt["device"],
             ", bf16" if rt["bf16"] else "")
    trainer.train(resume_from_checkpoint=resume)
    evaluated = [h.get("step") for h in trainer.state.log_history if "eval_train_loss" in h]
    if not evaluated or evaluated[-1] != trainer.state.global_step:
        trainer.evaluate()  # the end-of-training losses (logged to metrics.jsonl)

    final = partial / "final"
    if cfg.lora:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if main:
            merged.save_pretrained(final)
            tok.save_pretrained(final)
    else:
        trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    report: dict[str, Any] = {}
    if main:
        metrics = _read_rows_tolerant(partial / "metrics.jsonl")
        tr = [r for r in metrics if "eval_train_loss" in r]
        va = [r for r in metrics if "eval_val_loss" in r]
        steps = [r for r in metrics if "loss" in r]
        report = {
            "kind": "sft",
            "policy_path": str(policy_path),
            "n_rows": len(train),
            "n_val_rows": len(evals.get("val", [])),
            "n_truncated": n_trunc,
            "steps": trainer.state.global_step,
            "loss_start": tr[0]["eval_train_loss"] if tr else None,  # mean loss on a fixed train sample, step 0
            "loss_end": tr[-1]["eval_train_loss"] if tr else None,
            "val_loss_start": va[0]["eval_val_loss"] if va else None,
            "val_loss_end": va[-1]["eval_val_loss"] if va else None,
            "train_loss_first_step": steps[0]["loss"] if steps else None,
            "train_loss_last_step": steps[-1]["loss"] if steps else None,
            "train_eval_rows": len(sample),
            "resumed_from_step": resumed_step if resume else None,
            "seconds": round(time.time() - t0, 2),
            "device": rt["device"],
            "bf16": rt["bf16"],
            "distributed_type": str(trainer.accelerator.distributed_type.value),
            "world_size": args.world_size,
            "config": asdict(cfg),
        }
        shutil.copy2(partial / "metrics.jsonl", final / "metrics.jsonl")
        _write_json(final / "train_report.json", report)
        _finalize_dir(final, out)
        shutil.rmtree(partial, ignore_errors=True)
        log.info("SFT done: loss %.4f -> %.4f in %d steps; saved %s", report["loss_start"] or float("nan"),
                 report["loss_end"] or float("nan"), report["steps"], out)
    trainer.accelerator.wait_for_everyone()
    return report


# --------------------------------------------------------------------------------------------------------------------
# RL


class _RewardForTrl:
    """Adapts ``reward_fn(contexts, questions, completions)`` to trl's reward signature (prompts, completions and
    the dataset's extra columns as keyword lists). The name gives trl's metric ``rewards/judge/mean``."""

    __name__ = "judge"

    def __init__(self, reward_fn: RewardFn):
        self.reward_fn = reward_fn

    def __call__(self, prompts, completions, context, question, **kwargs) -> list[float]:
        return [float(r) for r in self.reward_fn(list(context), list(question), list(completions))]


def _rl_dataset(df):
    from datasets import Dataset

    contexts = [str(c) for c in df["context"]]
    questions = [str(q) for q in df["question"]]
    return Dataset.from_dict({
        "prompt": [formats.qa_prompt(c, q) for c, q in zip(contexts, questions)],
        "context": contexts,
        "question": questions,
    })


def _promote_best(partial: Path) -> None:
    """best-pending -> best; a kill in between leaves best-old, which :func:`_recover_best` puts back."""
    best, pending, old = partial / "best", partial / "best-pending", partial / "best-old"
    if best.exists():
        os.replace(best, old)
    os.replace(pending, best)
    shutil.rmtree(old, ignore_errors=True)


def _recover_best(partial: Path, resumed_step: int) -> None:
    """Before a (resumed) RL run: make ``best`` the best evaluation up to the resumed checkpoint. A
    ``best-pending`` from at or before that step (killed between the checkpoint and the promotion) is promoted when
    it is better; one from after it belongs to steps that will be redone and is dropped."""
    best, pending, old = partial / "best", partial / "best-pending", partial / "best-old"
    if old.exists():
        if best.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, best)

    def info(d: Path):
        try:
            return json.loads((d / "best.json").read_text())
        except (OSError, ValueError):
            return None

    if pending.exists():
        p, b = info(pending), info(best)
        if p is not None and p["step"] <= resumed_step and (b is None or p["reward"] > b["reward"]):
            log.info("keeping the best policy of step %d (held-out reward %.4f)", p["step"], p["reward"])
            _promote_best(partial)
        else:
            shutil.rmtree(pending)
    if best.exists() and info(best) is None:
        shutil.rmtree(best)


def _held_out_reward_callback(eval_df, reward_fn: RewardFn, tok, cfg: RLRunConfig, partial: Path,
                              writer: _Jsonl, main: bool):
    Base = _trainer_callback_base()

    class HeldOutReward(Base):
        """Mean reward of greedy completions on the held-out prompts at step 0, every ``eval_every`` steps and at
        the last step; keeps the best policy (steps >= eval_every).

        Best-model bookkeeping survives resumption: an improvement is saved to ``best-pending`` and becomes ``best``
        only once a trainer checkpoint at or after its step is written (``on_save``). A resumed run therefore
        drops ``best-pending`` (it belongs to steps that will be redone) and keeps a ``best`` that is consistent
        with the checkpoint it resumes from.
        """

        def __init__(self):
            self.trainer = None
            self.contexts = [str(c) for c in eval_df["context"]]
            self.questions = [str(q) for q in eval_df["question"]]
            self.best_dir, self.pending_dir = partial / "best", partial / "best-pending"
            info = self.best_dir / "best.json"
            self.best = json.loads(info.read_text()) if info.exists() else {"step": None, "reward": -math.inf}
            self.pending = None
            self.last_eval_step = None

        def evaluate(self) -> float:
            import torch
            from accelerate.utils import gather_object
            from transformers import GenerationConfig
            from trl.models.utils import unwrap_model_for_generation

            tr = self.trainer
            acc = tr.accelerator
            rank, world = acc.process_index, acc.num_processes
            idx = list(range(rank, len(self.contexts), world))
            eos = getattr(tr, "eos_token_ids", None) or [tok.eos_token_id]
            gen = GenerationConfig(do_sample=False, max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                                   eos_token_id=eos, bos_token_id=tok.bos_token_id)
            rewards: list[float] = []
            with unwrap_model_for_generation(
                tr.model_wrapped, acc, gather_deepspeed3_params=tr.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=tr.args.gradient_checkpointing_kwargs,
            ) as model, torch.no_grad():
                was_training = model.training
                model.eval()
                for start in range(0, len(idx), cfg.eval_batch_size):
                    b = idx[start:start + cfg.eval_batch_size]
                    ctx = [self.contexts[i] for i in b]
                    qs = [self.questions[i] for i in b]
                    enc = tok([formats.qa_prompt(c, q) for c, q in zip(ctx, qs)], return_tensors="pt",
                              padding=True, padding_side="left").to(acc.device)
                    out = model.generate(**enc, generation_config=gen)
                    completions = []
                    for row in out[:, enc["input_ids"].shape[1]:].tolist():
                        cut = next((j for j, t in enumerate(row) if t in eos), len(row))
                        completions.append(tok.decode(row[:cut], skip_special_tokens=True))
                    rewards.extend(float(r) for r in reward_fn(ctx, qs, completions))
                if was_training:
                    model.train()
            allr = gather_object(rewards)
            return float(sum(allr) / max(len(allr), 1))

        def _eval_and_log(self, state) -> float:
            t = time.time()
            r = self.evaluate()
            self.last_eval_step = state.global_step
            writer.write({"step": state.global_step, "heldout_reward": r, "heldout_n": len(self.contexts),
                          "heldout_seconds": round(time.time() - t, 2)})
            log.info("step %d: held-out reward (greedy) %.4f", state.global_step, r)
            return r

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                self._eval_and_log(state)
            return control

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if step % cfg.eval_every == 0 or step >= state.max_steps:
                r = self._eval_and_log(state)
                if r > self.best["reward"] and (self.pending is None or r > self.pending["reward"]):
                    # every process takes the same decision (gathered rewards) and takes part in save_model
                    if main and self.pending_dir.exists():
                        shutil.rmtree(self.pending_dir)
                    self.trainer.save_model(str(self.pending_dir))
                    self.pending = {"step": step, "reward": r}
                    if main:
                        _write_json(self.pending_dir / "best.json", self.pending)
            return control

        def promote(self):
            if self.pending is None:
                return
            if main:
                _promote_best(partial)
            self.best, self.pending = self.pending, None

        def on_save(self, args, state, control, **kwargs):
            self.promote()
            return control

    return HeldOutReward()


def rl(policy_path: str, prompts, eval_prompts, reward_fn: RewardFn, cfg: RLRunConfig, out_dir: str, *,
       stop_after_steps: int | None = None) -> dict[str, Any]:
    """RL fine-tuning of ``policy_path`` on ``prompts`` (columns context, question) with ``reward_fn``; see the
    module doc. ``eval_prompts`` (same columns) select the best checkpoint. Returns the train report (also in
    ``out_dir/train_report.json``)."""
    from transformers import AutoModelForCausalLM

    if cfg.algorithm == "rloo":
        from trl import RLOOConfig as Config, RLOOTrainer as TrainerCls
    else:
        from trl import GRPOConfig as Config, GRPOTrainer as TrainerCls

    _require_columns(prompts, ("context", "question"), "prompt rows")
    _require_columns(eval_prompts, ("context", "question"), "eval prompt rows")
    if not len(eval_prompts):
        raise ValueError("rl needs held-out eval_prompts to choose the best checkpoint")
    t0 = time.time()
    out, partial = Path(out_dir), Path(str(out_dir) + ".partial")
    rt = _runtime(cfg)
    tok = _load_tokenizer(policy_path, padding_side="left")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions_per_step = cfg.batch_size * cfg.num_generations
    if completions_per_step % (world * cfg.grad_accum):
        raise ValueError(f"batch_size*num_generations ({completions_per_step}) must be divisible by "
                         f"processes*grad_accum ({world}*{cfg.grad_accum})")
    args = Config(
        **_common_args(cfg, rt, partial, out_dir),
        max_steps=cfg.steps,
        per_device_train_batch_size=completions_per_step // (world * cfg.grad_accum),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        beta=cfg.kl_beta,
        adam_beta2=cfg.adam_beta2,
        eval_strategy="no",
        log_completions=False,
        disable_dropout=True,  # clean log-prob ratios and KL to the reference
    )
    main = args.process_index == 0
    with args.main_process_first():
        resume, resumed_step = _prepare_partial(partial, main, _fingerprint(
            "rl", policy_path, cfg, prompts[["context", "question"]], eval_prompts[["context", "question"]]))
        if main:
            _recover_best(partial, resumed_step)
    writer = _Jsonl(partial / "metrics.jsonl", main)
    held_out = _held_out_reward_callback(eval_prompts, reward_fn, tok, cfg, partial, writer, main)

    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=rt["load_dtype"])
    trainer = TrainerCls(
        model=model,
        reward_funcs=_RewardForTrl(reward_fn),
        args=args,
        train_dataset=_rl_dataset(prompts),
        processing_class=tok,
        callbacks=[held_out, *_callbacks(writer, stop_after_steps)],
        peft_config=_peft_config(cfg) if cfg.lora else None,
    )
    held_out.trainer = trainer
    log.info("RL (%s) of %s: %d steps x %d prompts x %d completions, KL beta %g, %s%s", cfg.algorithm, policy_path,
             cfg.steps, cfg.batch_size, cfg.num_generations, cfg.kl_beta, rt["device"], ", bf16" if rt["bf16"] else "")
    trainer.train(resume_from_checkpoint=resume)
    if held_out.last_eval_step != trainer.state.global_step:  # e.g. resumed at the very end
        held_out.on_step_end(args, trainer.state, trainer.control)
    held_out.promote()
    trainer.save_model(str(partial / "last"))
    trainer.accelerator.wait_for_everyone()

    report: dict[str, Any] = {}
    if main:
        if cfg.lora:
            for d in ("best", "last"):
                _merge_adapter(policy_path, partial / d, rt["load_dtype"])
        if not (partial / "best").exists():  # steps < eval_every: the last policy is the only candidate
            shutil.copytree(partial / "last", partial / "best")
            _write_json(partial / "best" / "best.json", {"step": trainer.state.global_step,
                                                          "reward": held_out.best["reward"]})
        best = json.loads((partial / "best" / "best.json").read_text())
        metrics = _read_rows_tolerant(partial / "metrics.jsonl")
        ho = [r for r in metrics if "heldout_reward" in r]
        tr = [r for r in metrics if r.get("reward") is not None]
        kl = [r for r in metrics if r.get("kl") is not None]
        report = {
            "kind": "rl",
            "algorithm": cfg.algorithm,
            "policy_path": str(policy_path),
            "n_prompts": len(prompts),
            "n_eval_prompts": len(eval_prompts),
            "steps": trainer.state.global_step,
            "heldout_decoding": "greedy",
            "heldout_reward_start": ho[0]["heldout_reward"] if ho and ho[0]["step"] == 0 else None,
            "heldout_reward_end": ho[-1]["heldout_reward"] if ho else None,
            "best_step": best["step"],
            "best_heldout_reward": best["reward"] if best["reward"] is not None and math.isfinite(best["reward"])
            else None,
            "train_reward_first": tr[0]["reward"] if tr else None,  # mean sampled reward of the first batch
            "train_reward_last": tr[-1]["reward"] if tr else None,
            "kl_last": kl[-1]["kl"] if kl else None,
            "resumed_from_step": resumed_step if resume else None,
            "seconds": round(time.time() - t0, 2),
            "device": rt["device"],
            "bf16": rt["bf16"],
            "distributed_type": str(trainer.accelerator.distributed_type.value),
            "world_size": args.world_size,
            "config": asdict(cfg),
        }
        for _, p, _ in _checkpoints(partial):
            shutil.rmtree(p)
        (partial / "README.md").unlink(missing_ok=True)  # trl's model card for the checkpoints
        (partial / "run_fingerprint.txt").unlink(missing_ok=True)
        _write_json(partial / "train_report.json", report)
        _finalize_dir(partial, out)
        log.info("RL done: held-out reward %s -> %s, best %s at step %s; saved %s", report["heldout_reward_start"],
                 report["heldout_reward_end"], report["best_heldout_reward"], report["best_step"], out)
    trainer.accelerator.wait_for_everyone()
    return report


# --------------------------------------------------------------------------------------------------------------------
# Launching


MODULE = "talltales.deception.train"


def accelerate_command(script_args: Sequence[str], num_gpus: int,
                       config_file: str = "envs/accelerate/zero2.yaml", always: bool = False,
                       main_process_port: int | None = None) -> list[str]:
    """The command that runs ``python -m talltales.deception.train *script_args``: through ``accelerate launch``
    with ``config_file`` and ``--num_processes num_gpus`` when ``num_gpus > 1`` (or ``always``), else plain python.
    ``main_process_port``: the rendezvous port (accelerate's default 29500 collides when two jobs share a node)."""
    if (num_gpus and num_gpus > 1) or always:
        port = ["--main_process_port", str(int(main_process_port))] if main_process_port else []
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                "--num_processes", str(max(1, int(num_gpus or 0))), *port, "-m", MODULE, *map(str, script_args)]
    return [sys.executable, "-m", MODULE, *map(str, script_args)]


def free_port() -> int:
    """A TCP port that is free on this host now (for a one-node launch's rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job_port(job_id: str | int, base: int = 29500, span: int = 10000) -> int:
    """A rendezvous port that every node of a Slurm job derives alike from its job id (jobs sharing the head
    node get different ports unless their ids differ by a multiple of ``span``)."""
    return base + int(job_id) % span


def multinode_command(script_args: Sequence[str], num_gpus: int, nodes: int, main_process_ip: str,
                      config_file: str = "envs/accelerate/zero2.yaml", main_process_port: int = 29500) -> list[str]:
    """For a Slurm job over ``nodes`` nodes (``num_gpus`` in all): ``srun`` starts one task per node, and each runs
    ``accelerate launch --num_machines nodes --machine_rank $SLURM_PROCID --main_process_ip HEAD`` with
    ``num_gpus`` processes in all (accelerate starts ``num_gpus / nodes`` on its node)."""
    if nodes < 2:
        raise ValueError(f"multinode_command needs at least 2 nodes, got {nodes}")
    if num_gpus % nodes:
        raise ValueError(f"{num_gpus} GPUs do not split evenly over {nodes} nodes (gpus is the total over the nodes)")
    launch = accelerate_command(script_args, num_gpus, config_file, always=True, main_process_port=main_process_port)
    i = launch.index("--num_processes")
    machine = ["--num_machines", str(nodes), "--machine_rank", "$SLURM_PROCID", "--main_process_ip", main_process_ip]
    launch = launch[:i + 2] + machine + launch[i + 2:]
    # $SLURM_PROCID is expanded by each task's shell (the task's rank = its node's rank); the rest is quoted
    shell = " ".join(a if a == "$SLURM_PROCID" else shlex.quote(a) for a in launch)
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "bash", "-c", shell]


def first_node(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[01-04]`` -> ``node01``), through ``scontrol show hostnames``."""
    import subprocess

    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    hosts = out.stdout.split()
    if not hosts:
        raise RuntimeError(f"scontrol show hostnames {nodelist!r} named no host")
    return hosts[0]


def read_rows(path: str | os.PathLike):
    """A study-2 table (csv, parquet or jsonl) with text columns kept as strings ("None", "NA" stay text)."""
    import pandas as pd

    path = str(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, keep_default_na=False, dtype={"context": str, "question": str, "answer": str})


def judge_reward_fn(judge) -> RewardFn:
    """reward = judge P(True) on the canonical judge input (the completion's first line)."""

    def reward_fn(contexts, questions, completions):
        texts = [formats.judge_input(c, q, a) for c, q, a in zip(contexts, questions, completions)]
        return [float(p) for p in judge.p_true(texts)]

    return reward_fn


def main(argv: list[str] | None = None) -> int:
    """``python -m talltales.deception.train {sft|rl} --args-json FILE``.

    sft JSON: ``policy_path``, ``data`` (demonstrations), optional ``val_data``, ``config`` (SFTRunConfig fields),
    ``out_dir``, optional ``reference_dir``, ``log`` (log file).
    rl JSON: ``policy_path``, ``prompts``, ``eval_prompts``, ``judge_path``, optional ``judge_batch_size`` (32),
    ``config`` (RLRunConfig fields), ``out_dir``, optional ``log``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("mode", choices=["sft", "rl"])
    parser.add_argument("--args-json", required=True)
    ns = parser.parse_args(argv)
    spec = json.loads(Path(ns.args_json).read_text(encoding="utf-8"))
    if spec.get("log"):
        from talltales.logs import to_logfile

        to_logfile(spec["log"])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ns.mode == "sft":
        sft(spec["policy_path"], read_rows(spec["data"]), SFTRunConfig.from_dict(spec.get("config")),
            spec["out_dir"], spec.get("reference_dir"),
            val_rows=read_rows(spec["val_data"]) if spec.get("val_data") else None)
    else:
        from talltales.deception.judge import Judge

        judge = Judge.load(spec["judge_path"], device="auto", batch_size=int(spec.get("judge_batch_size", 32)))
        rl(spec["policy_path"], read_rows(spec["prompts"]), read_rows(spec["eval_prompts"]), judge_reward_fn(judge),
           RLRunConfig.from_dict(spec.get("config")), spec["out_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
