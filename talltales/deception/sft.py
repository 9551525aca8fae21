"""Supervised fine-tuning of a causal LM on demonstrations (the warm-up of the RL policies on correct answers, and
SFT on poisoned demonstrations: the caller chooses the rows).

A demonstration is ``formats.qa_prompt(context, question) + " " + answer + EOS`` with the loss on the answer tokens
(and the EOS) only: prompt tokens and pad tokens are masked with -100 (:func:`encode_demo`, :class:`DemoCollator`;
pads are found from the attention mask, so this holds for left and right padding and when the pad token is the EOS
token). :func:`sft` runs on the transformers ``Trainer`` (DeepSpeed through ``accelerate launch``, checkpoints,
resumption) with the run-directory protocol of :mod:`talltales.deception.runs`; ``out_dir`` then holds the model,
its tokenizer, ``metrics.jsonl`` and ``train_report.json``.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from transformers import Trainer

from talltales.deception import formats, runs
from talltales.deception.settings import SFTRunConfig, peft_config, runtime, trainer_args
from talltales.runtime import load_tokenizer

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


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


class AnswerLossTrainer(Trainer):
    """A transformers Trainer whose loss is :func:`answer_loss` (a per-micro-batch mean, so the Trainer scales it
    for gradient accumulation)."""

    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = answer_loss(model, inputs)
        return (loss, {"loss": loss}) if return_outputs else loss


def require_columns(df, columns: Sequence[str], what: str) -> None:
    missing = set(columns) - set(df.columns)
    if missing:
        raise ValueError(f"{what} lack column(s) {sorted(missing)}")


def encode_rows(tok, rows, max_length: int) -> list[dict[str, Any]]:
    """Encode a DataFrame with ``context``, ``question``, ``answer`` columns."""
    require_columns(rows, ("context", "question", "answer"), "demonstration rows")
    return [encode_demo(tok, str(r.context), str(r.question), str(r.answer), max_length)
            for r in rows.itertuples(index=False)]


def sft(policy_path: str, rows, cfg: SFTRunConfig, out_dir: str, *, val_rows=None,
        stop_after_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune ``policy_path`` on demonstrations ``rows`` (columns context, question, answer); see the module doc.

    ``val_rows``: optional held-out demonstrations whose loss is logged every ``cfg.eval_every`` steps.
    ``stop_after_steps``: testing hook, raises KeyboardInterrupt after that step (resumable).
    Returns the train report (also written to ``out_dir/train_report.json``).
    """
    from transformers import AutoModelForCausalLM, TrainingArguments, set_seed

    require_columns(rows, ("context", "question", "answer"), "demonstration rows")
    if val_rows is not None:
        require_columns(val_rows, ("context", "question", "answer"), "validation rows")
    t0 = time.time()
    out, partial = Path(out_dir), runs.partial_dir(out_dir)
    rt = runtime(cfg)
    tok = load_tokenizer(policy_path)

    args = TrainingArguments(
        **trainer_args(cfg, rt, partial, out_dir),
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
        resume, resumed_step = runs.prepare_partial(
            partial, main, runs.fingerprint("sft", policy_path, cfg, rows[["context", "question", "answer"]], val_rows))
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

        model = get_peft_model(model, peft_config(cfg))
    elif cfg.freeze_embeddings:
        runs.freeze_input_embeddings(model)
    writer = runs.MetricsWriter(partial / runs.METRICS_FILE, main)
    trainer = AnswerLossTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        data_collator=DemoCollator(tok.pad_token_id, "left"),  # answers at the end: see answer_loss
        processing_class=tok,
        callbacks=runs.callbacks(writer, stop_after_steps),
    )
    log.info("SFT of %s on %d demonstrations (%s%s)", policy_path, len(train), rt["device"],
             ", bf16" if rt["bf16"] else "")
    trainer.train(resume_from_checkpoint=resume)
    evaluated = [h.get("step") for h in trainer.state.log_history if "eval_train_loss" in h]
    if not evaluated or evaluated[-1] != trainer.state.global_step:
        trainer.evaluate()  # the end-of-training losses (logged to metrics.jsonl)

    def make_report() -> dict[str, Any]:
        metrics = runs.read_metrics(partial / runs.METRICS_FILE)
        tr = [r for r in metrics if "eval_train_loss" in r]
        va = [r for r in metrics if "eval_val_loss" in r]
        steps = [r for r in metrics if "loss" in r]
        return {
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
            **runs.run_facts(t0, rt, trainer, cfg),
        }

    report = runs.save_final(trainer, tok, partial, out, lora=cfg.lora, main=main, make_report=make_report,
                             save_dtype=cfg.save_dtype, split_embeddings=True, share_with=policy_path)
    if main:
        log.info("SFT done: loss %.4f -> %.4f in %d steps; saved %s", report["loss_start"] or float("nan"),
                 report["loss_end"] or float("nan"), report["steps"], out)
    trainer.accelerator.wait_for_everyone()
    return report


