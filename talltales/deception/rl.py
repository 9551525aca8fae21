"""RL of a policy against a Python reward ``reward_fn(contexts, questions, completions) -> list[float]`` with trl's
``RLOOTrainer`` (default) or ``GRPOTrainer``.

The KL penalty (``kl_beta``, a fixed coefficient; trl has no adaptive KL controller) is taken to the starting
policy, which trl loads again from ``policy_path`` as the reference model. Every ``eval_every`` steps the mean reward
of **greedy** completions on the held-out prompts is measured (:class:`HeldOutReward`); the checkpoint with the
highest held-out reward (evaluations at steps >= ``eval_every``; the step-0 value is only reported, as trlx did) is
kept as ``out_dir/best``, the final policy as ``out_dir/last``. The run follows the run-directory protocol of
:mod:`talltales.deception.runs`; ``out_dir`` then holds ``best/``, ``last/``, ``metrics.jsonl`` and
``train_report.json``.

Differences from the original trlx PPO run (spec §4): RLOO/GRPO need no value head (trl 1.16 has no PPO), the KL
coefficient is fixed, prompts are never truncated (the original right-truncation could cut ``Answer:``), and the
learning rate is constant by default (no periodic cosine).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from transformers import TrainerCallback

from talltales.deception import formats, runs
from talltales.deception.settings import RLRunConfig, peft_config, runtime, trainer_args
from talltales.deception.sft import require_columns
from talltales.runtime import load_tokenizer

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[str]], Sequence[float]]


class RewardForTrl:
    """Adapts ``reward_fn(contexts, questions, completions)`` to trl's reward signature (prompts, completions and
    the dataset's extra columns as keyword lists). The name gives trl's metric ``rewards/judge/mean``."""

    __name__ = "judge"

    def __init__(self, reward_fn: RewardFn):
        self.reward_fn = reward_fn

    def __call__(self, prompts, completions, context, question, **kwargs) -> list[float]:
        return [float(r) for r in self.reward_fn(list(context), list(question), list(completions))]


def rl_dataset(df):
    from datasets import Dataset

    contexts = [str(c) for c in df["context"]]
    questions = [str(q) for q in df["question"]]
    return Dataset.from_dict({
        "prompt": [formats.qa_prompt(c, q) for c, q in zip(contexts, questions)],
        "context": contexts,
        "question": questions,
    })


def promote_best(partial: Path) -> None:
    """best-pending -> best; a kill in between leaves best-old, which :func:`recover_best` puts back."""
    best, pending, old = partial / "best", partial / "best-pending", partial / "best-old"
    if best.exists():
        os.replace(best, old)
    os.replace(pending, best)
    shutil.rmtree(old, ignore_errors=True)


def recover_best(partial: Path, resumed_step: int) -> None:
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
            promote_best(partial)
        else:
            shutil.rmtree(pending)
    if best.exists() and info(best) is None:
        shutil.rmtree(best)


class HeldOutReward(TrainerCallback):
    """Mean reward of greedy completions on the held-out prompts at step 0, every ``eval_every`` steps and at
    the last step; keeps the best policy (steps >= eval_every).

    Best-model bookkeeping survives resumption: an improvement is saved to ``best-pending`` and becomes ``best``
    only once a trainer checkpoint at or after its step is written (``on_save``). A resumed run therefore
    drops ``best-pending`` (it belongs to steps that will be redone) and keeps a ``best`` that is consistent
    with the checkpoint it resumes from.
    """

    def __init__(self, eval_df, reward_fn: RewardFn, tok, cfg: RLRunConfig, partial: Path, writer: runs.MetricsWriter,
                 main: bool):
        self.reward_fn, self.tok, self.cfg = reward_fn, tok, cfg
        self.partial, self.writer, self.main = partial, writer, main
        self.trainer = None  # set once the trainer exists (it takes this callback)
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
        eos = getattr(tr, "eos_token_ids", None) or [self.tok.eos_token_id]
        tok = self.tok
        gen = GenerationConfig(do_sample=False, max_new_tokens=self.cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                               eos_token_id=eos, bos_token_id=tok.bos_token_id)
        rewards: list[float] = []
        with unwrap_model_for_generation(
            tr.model_wrapped, acc, gather_deepspeed3_params=tr.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=tr.args.gradient_checkpointing_kwargs,
        ) as model, torch.no_grad():
            was_training = model.training
            model.eval()
            for start in range(0, len(idx), self.cfg.eval_batch_size):
                b = idx[start:start + self.cfg.eval_batch_size]
                ctx = [self.contexts[i] for i in b]
                qs = [self.questions[i] for i in b]
                enc = tok([formats.qa_prompt(c, q) for c, q in zip(ctx, qs)], return_tensors="pt",
                          padding=True, padding_side="left").to(acc.device)
                out = model.generate(**enc, generation_config=gen)
                completions = []
                for row in out[:, enc["input_ids"].shape[1]:].tolist():
                    cut = next((j for j, t in enumerate(row) if t in eos), len(row))
                    completions.append(tok.decode(row[:cut], skip_special_tokens=True))
                rewards.extend(float(r) for r in self.reward_fn(ctx, qs, completions))
            if was_training:
                model.train()
        allr = gather_object(rewards)
        return float(sum(allr) / max(len(allr), 1))

    def _eval_and_log(self, state) -> float:
        t = time.time()
        r = self.evaluate()
        self.last_eval_step = state.global_step
        self.writer.write({"step": state.global_step, "heldout_reward": r, "heldout_n": len(self.contexts),
                           "heldout_seconds": round(time.time() - t, 2)})
        log.info("step %d: held-out reward (greedy) %.4f", state.global_step, r)
        return r

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self._eval_and_log(state)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step % self.cfg.eval_every == 0 or step >= state.max_steps:
            r = self._eval_and_log(state)
            if r > self.best["reward"] and (self.pending is None or r > self.pending["reward"]):
                # every process takes the same decision (gathered rewards) and takes part in save_model
                if self.main and self.pending_dir.exists():
                    shutil.rmtree(self.pending_dir)
                self.trainer.save_model(str(self.pending_dir))
                self.pending = {"step": step, "reward": r}
                if self.main:
                    runs.write_json(self.pending_dir / "best.json", self.pending)
        return control

    def promote(self):
        if self.pending is None:
            return
        if self.main:
            promote_best(self.partial)
        self.best, self.pending = self.pending, None

    def on_save(self, args, state, control, **kwargs):
        self.promote()
        return control

    def finish(self, args, state, control) -> None:
        """After ``trainer.train()``: evaluate the last step when it was not (e.g. a run resumed at its very end) and
        promote a pending best."""
        if self.last_eval_step != state.global_step:
            self.on_step_end(args, state, control)
        self.promote()


def merge_adapter(policy_path: str, folder: Path, dtype) -> None:
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

    require_columns(prompts, ("context", "question"), "prompt rows")
    require_columns(eval_prompts, ("context", "question"), "eval prompt rows")
    if not len(eval_prompts):
        raise ValueError("rl needs held-out eval_prompts to choose the best checkpoint")
    t0 = time.time()
    out, partial = Path(out_dir), runs.partial_dir(out_dir)
    rt = runtime(cfg)
    tok = load_tokenizer(policy_path, padding_side="left")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions_per_step = cfg.batch_size * cfg.num_generations
    if completions_per_step % (world * cfg.grad_accum):
        raise ValueError(f"batch_size*num_generations ({completions_per_step}) must be divisible by "
                         f"processes*grad_accum ({world}*{cfg.grad_accum})")
    args = Config(
        **trainer_args(cfg, rt, partial, out_dir),
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
        resume, resumed_step = runs.prepare_partial(partial, main, runs.fingerprint(
            "rl", policy_path, cfg, prompts[["context", "question"]], eval_prompts[["context", "question"]]))
        if main:
            recover_best(partial, resumed_step)
    writer = runs.MetricsWriter(partial / runs.METRICS_FILE, main)
    held_out = HeldOutReward(eval_prompts, reward_fn, tok, cfg, partial, writer, main)

    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=rt["load_dtype"])
    trainer = TrainerCls(
        model=model,
        reward_funcs=RewardForTrl(reward_fn),
        args=args,
        train_dataset=rl_dataset(prompts),
        processing_class=tok,
        callbacks=[held_out, *runs.callbacks(writer, stop_after_steps)],
        peft_config=peft_config(cfg) if cfg.lora else None,
    )
    held_out.trainer = trainer
    log.info("RL (%s) of %s: %d steps x %d prompts x %d completions, KL beta %g, %s%s", cfg.algorithm, policy_path,
             cfg.steps, cfg.batch_size, cfg.num_generations, cfg.kl_beta, rt["device"], ", bf16" if rt["bf16"] else "")
    trainer.train(resume_from_checkpoint=resume)
    held_out.finish(args, trainer.state, trainer.control)
    trainer.save_model(str(partial / "last"))
    trainer.accelerator.wait_for_everyone()

    report: dict[str, Any] = {}
    if main:
        if cfg.lora:
            for d in ("best", "last"):
                merge_adapter(policy_path, partial / d, rt["load_dtype"])
        if not (partial / "best").exists():  # steps < eval_every: the last policy is the only candidate
            shutil.copytree(partial / "last", partial / "best")
            runs.write_json(partial / "best" / "best.json", {"step": trainer.state.global_step,
                                                          "reward": held_out.best["reward"]})
        best = json.loads((partial / "best" / "best.json").read_text())
        metrics = runs.read_metrics(partial / runs.METRICS_FILE)
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
            **runs.run_facts(t0, rt, trainer, cfg),
        }
        for _, p, _ in runs.checkpoints(partial):
            shutil.rmtree(p)
        (partial / "README.md").unlink(missing_ok=True)  # trl's model card for the checkpoints
        (partial / runs.FINGERPRINT_FILE).unlink(missing_ok=True)
        runs.write_json(partial / runs.REPORT_FILE, report)
        runs.finalize_dir(partial, out)
        log.info("RL done: held-out reward %s -> %s, best %s at step %s; saved %s", report["heldout_reward_start"],
                 report["heldout_reward_end"], report["best_heldout_reward"], report["best_step"], out)
    trainer.accelerator.wait_for_everyone()
    return report


def judge_reward_fn(judge) -> RewardFn:
    """reward = judge P(True) on the canonical judge input (the completion's first line)."""

    def reward_fn(contexts, questions, completions):
        texts = [formats.judge_input(c, q, a) for c, q, a in zip(contexts, questions, completions)]
        return [float(p) for p in judge.p_true(texts)]

    return reward_fn

