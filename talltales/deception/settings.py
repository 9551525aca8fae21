"""The settings of study 2's policy training: one dataclass per stage (:class:`SFTRunConfig` for the warm-up and SFT
on demonstrations, :class:`RLRunConfig` for RL), and what they mean for transformers / trl / peft (device and
precision :func:`runtime`, the shared ``TrainingArguments`` fields :func:`trainer_args`, :func:`peft_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talltales import tracking
from talltales.runtime import training_precision


class FromDict:
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, only_fields: bool = False):
        """Build from a mapping. An unknown key is an error (a typo must not silently fall back to a default),
        unless ``only_fields``: then the dataclass's fields are taken from a larger mapping, e.g. a config section
        that also holds the stage's data sizes (the schema rejects unknown keys there)."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and not only_fields:
            raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class SFTRunConfig(FromDict):
    """Supervised fine-tuning on demonstrations (the loss is on answer tokens + EOS only): config sections
    ``deception.sft`` and ``deception.warmup`` (whose default is 1 epoch), whose defaults are these (tested)."""

    epochs: float = 2
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
    save_dtype: str = "float32"  # how the trained weights are stored: float32 | float16 | bfloat16 (half the disk)
    freeze_embeddings: bool = False  # input embeddings (and a head tied to them) not trained; stored once (links)
    device: str = "auto"  # auto: CUDA when available, else CPU


@dataclass
class RLRunConfig(FromDict):
    """RL against a reward function (trl RLOO or GRPO): config section ``deception.rl``, whose defaults are these
    (tested)."""

    engine: str = "talltales"  # "talltales": the project's RLOO step (one process, rloo.py) | "trl": trl's trainers
    algorithm: str = "rloo"  # with engine "trl": "rloo" | "grpo" (the talltales engine is RLOO)
    prefix_gradient: bool = True  # talltales engine: differentiate through the prompt's keys/values (exact)
    steps: int = 40  # optimizer steps
    lr: float = 1e-5
    batch_size: int = 4  # prompts per optimizer step (all processes together)
    num_generations: int = 4  # sampled completions per prompt (>= 2)
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter (trl default; the sampled tokens are then from the trained distribution)
    kl_beta: float = 0.05  # fixed KL coefficient to the reference (= the starting policy)
    eval_every: int = 10  # steps between held-out reward evaluations (greedy decoding)
    eval_batch_size: int = 16
    checkpoint_every: int = 50
    keep_last: bool = False  # also keep the final policy as last/ (best/, the evaluated one, is always kept)
    save_dtype: str = "float32"  # how the kept weights are stored: float32 | float16 | bfloat16 (half the disk)
    freeze_embeddings: bool = False  # input embeddings (and a head tied to them) not trained; stored once (links)
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
        if self.engine not in ("talltales", "trl"):
            raise ValueError(f"RLRunConfig.engine must be 'talltales' or 'trl', not {self.engine!r}")
        if self.algorithm not in ("rloo", "grpo"):
            raise ValueError(f"RLRunConfig.algorithm must be 'rloo' or 'grpo', not {self.algorithm!r}")
        if self.num_generations < 2:
            raise ValueError("RLRunConfig.num_generations must be >= 2 (the baselines need two samples per prompt)")


def runtime(cfg) -> dict[str, Any]:
    """Device and precision of the run ``cfg`` (its ``device``, ``dtype`` and ``lora``): the one training policy,
    :func:`talltales.runtime.training_precision`."""
    return training_precision(cfg.device, cfg.dtype, cfg.lora)


def trainer_args(cfg, rt: dict[str, Any], partial: Path, out_dir) -> dict[str, Any]:
    """TrainingArguments fields shared by SFT (transformers) and RL (trl configs extend TrainingArguments):
    optimisation, seeds, logging, checkpoints every ``cfg.checkpoint_every`` steps in ``partial``, precision and
    device from :func:`runtime`, W&B when WANDB_PROJECT is set (talltales/tracking.py)."""
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


def peft_config(cfg):
    try:
        from peft import LoraConfig
    except ImportError as exc:  # pragma: no cover - peft is optional
        raise ImportError("lora=True needs the `peft` package (pip install peft)") from exc
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=cfg.lora_target_modules)


