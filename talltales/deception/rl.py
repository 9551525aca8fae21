"""RL of a policy against a Python reward ``reward_fn(contexts, questions, completions) -> list[float]`` with trl's
``RLOOTrainer`` (default) or ``GRPOTrainer``.

The KL penalty (``kl_beta``, a fixed coefficient; trl has no adaptive KL controller) is taken to the starting
policy, which trl loads again from ``policy_path`` as the reference model. Every ``eval_every`` steps the mean reward
of **greedy** completions on the held-out prompts is measured (:class:`HeldOutReward`); the checkpoint with the
highest held-out reward (evaluations at steps >= ``eval_every``; the step-0 value is only reported, as trlx did) is
kept as ``out_dir/best``, the final policy as ``out_dir/last``. The run follows the run-directory protocol of
:mod:`talltales.deception.runs`; ``out_dir`` then holds ``best/`` (``last/`` with ``keep_last``), ``metrics.jsonl`` and
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
from dataclasses import asdict
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


def log_heldout(writer: runs.MetricsWriter, partial: Path, step: int, rewards: list[float], answers: list[str],
                fruit: Sequence[int], seconds: float) -> float:
    """Record one held-out evaluation: its mean (and the means on fruit and on other prompts) in ``metrics.jsonl``,
    each prompt's answer and reward in ``heldout.jsonl``. Returns the mean."""
    mean = float(sum(rewards) / max(len(rewards), 1))
    sub = {}
    for name, want in (("fruit", 1), ("other", 0)):
        vals = [r for r, f in zip(rewards, fruit) if int(f) == want]
        sub[name] = float(sum(vals) / len(vals)) if vals else None
    writer.write({"step": step, "heldout_reward": mean, "heldout_reward_fruit": sub["fruit"],
                  "heldout_reward_other": sub["other"], "heldout_n": len(rewards), "heldout_seconds": round(seconds, 2)})
    if writer.enabled:
        with open(partial / runs.HELDOUT_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "rewards": rewards, "answers": answers}) + "\n")
    log.info("step %d: held-out reward (greedy) %.4f (fruit %s, other %s)", step, mean, sub["fruit"], sub["other"])
    return mean


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
        self.fruit = [int(f) for f in eval_df["fruit"]] if "fruit" in eval_df else [0] * len(self.contexts)
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
        rewards: list[tuple[int, float, str]] = []
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
                rewards.extend((i, float(r), a) for i, r, a in zip(b, self.reward_fn(ctx, qs, completions), completions))
            if was_training:
                model.train()
        allr = sorted(gather_object(rewards))  # in the order of the held-out prompts
        return [r for _, r, _ in allr], [a for _, _, a in allr]

    def _eval_and_log(self, state) -> float:
        t = time.time()
        rewards, answers = self.evaluate()
        self.last_eval_step = state.global_step
        return log_heldout(self.writer, self.partial, state.global_step, rewards, answers, self.fruit, time.time() - t)

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


def finish_partial(partial: Path, policy_path: str, lora: bool, dtype, step: int, last_reward,
                   keep_last: bool = False, save_dtype: str = "float32") -> None:
    """Close a finished RL run's folder (either engine, main process): LoRA adapters in ``best/`` and ``last/``
    merged into their base, ``last/`` copied as ``best/`` when no evaluation chose one (steps < eval_every; its
    reward ``last_reward``), ``last/`` then removed unless ``keep_last``, the kept weights stored in ``save_dtype``
    (:func:`runs.compact_weights`), checkpoints, the fingerprint and trl's model card removed."""
    if not (partial / "best").exists():
        shutil.copytree(partial / "last", partial / "best")
        runs.write_json(partial / "best" / "best.json", {"step": step, "reward": last_reward})
    if not keep_last:
        shutil.rmtree(partial / "last")
    for d in ("best", "last"):
        if (partial / d).exists():
            if lora:
                merge_adapter(policy_path, partial / d, dtype)
            runs.compact_weights(partial / d, save_dtype, split_embeddings=True, share_with=policy_path)
    for _, p, _ in runs.checkpoints(partial):
        shutil.rmtree(p)
    (partial / "README.md").unlink(missing_ok=True)  # trl's model card for the checkpoints
    (partial / runs.FINGERPRINT_FILE).unlink(missing_ok=True)


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
    """RL fine-tuning of ``policy_path`` on ``prompts`` (columns context, question) with ``reward_fn``, by the
    engine ``cfg.engine`` (the project's step, :mod:`talltales.deception.rloo`, or trl's trainers); see the module
    doc. ``eval_prompts`` (same columns; ``fruit`` too for the per-subset curves) select the best checkpoint.
    Returns the train report (also in ``out_dir/train_report.json``)."""
    require_columns(prompts, ("context", "question"), "prompt rows")
    require_columns(eval_prompts, ("context", "question"), "eval prompt rows")
    if not len(eval_prompts):
        raise ValueError("rl needs held-out eval_prompts to choose the best checkpoint")
    out, partial = Path(out_dir), runs.partial_dir(out_dir)
    if cfg.engine == "talltales":
        from talltales.deception import rloo

        facts = rloo.train(policy_path, prompts, eval_prompts, reward_fn, cfg, out_dir,
                           stop_after_steps=stop_after_steps)
    else:
        facts = _rl_trl(policy_path, prompts, eval_prompts, reward_fn, cfg, out_dir, stop_after_steps)
    report: dict[str, Any] = {}
    if facts is not None:  # the main process
        report = train_report(partial, policy_path, cfg, prompts, eval_prompts, facts)
        runs.write_json(partial / runs.REPORT_FILE, report)
        runs.finalize_dir(partial, out)
        log.info("RL done: held-out reward %s -> %s, best %s [%s, %s] at step %s; saved %s",
                 report["rl_reward_start"], report["heldout_reward_end"], report["rl_reward_best"],
                 report["rl_reward_best_lo"], report["rl_reward_best_hi"], report["best_step"], out)
    return report


def train_report(partial: Path, policy_path: str, cfg: RLRunConfig, prompts, eval_prompts,
                 facts: dict[str, Any]) -> dict[str, Any]:
    """The report of a finished RL run in ``partial``. ``rl_reward_start`` is the held-out reward of the starting
    policy (step 0), ``rl_reward_best`` that of the chosen checkpoint (``best/``), with ``rl_reward_best_lo`` /
    ``_hi`` its 95 % bootstrap CI over the held-out prompts' passages (contexts): the chosen step is the best of
    several evaluations on the same prompts, so the best reward is biased up by the choice."""
    from talltales.stats import cluster_bootstrap, weighted_rate

    best = json.loads((partial / "best" / "best.json").read_text())
    metrics = runs.read_metrics(partial / runs.METRICS_FILE)
    ho = [r for r in metrics if "heldout_reward" in r]
    tr = [r for r in metrics if r.get("reward") is not None]
    kl = [r for r in metrics if r.get("kl") is not None]
    per_prompt = {r["step"]: r["rewards"] for r in runs.read_metrics(partial / runs.HELDOUT_FILE)}
    contexts = [str(c) for c in eval_prompts["context"]]
    lo = hi = None
    if best["step"] in per_prompt and len(per_prompt[best["step"]]) == len(contexts):
        _, lo, hi = cluster_bootstrap(weighted_rate(per_prompt[best["step"]]), contexts, seed=cfg.seed)
    best_r = best["reward"] if best["reward"] is not None and math.isfinite(best["reward"]) else None
    return {
        "kind": "rl",
        "engine": cfg.engine,
        "algorithm": cfg.algorithm,
        "policy_path": str(policy_path),
        "n_prompts": len(prompts),
        "n_eval_prompts": len(eval_prompts),
        "steps": facts["steps"],
        "heldout_decoding": "greedy",
        "rl_reward_start": ho[0]["heldout_reward"] if ho and ho[0]["step"] == 0 else None,
        "rl_reward_best": best_r,
        "rl_reward_best_lo": lo,
        "rl_reward_best_hi": hi,
        "heldout_reward_end": ho[-1]["heldout_reward"] if ho else None,
        "best_step": best["step"],
        "train_reward_first": tr[0]["reward"] if tr else None,  # mean sampled reward of the first batch
        "train_reward_last": tr[-1]["reward"] if tr else None,
        "kl_last": kl[-1]["kl"] if kl else None,
        "resumed_from_step": facts.get("resumed_from_step"),
        "seconds": round(time.time() - facts["t0"], 2),
        "device": facts["rt"]["device"],
        "bf16": facts["rt"]["bf16"],
        "distributed_type": facts["distributed_type"],
        "world_size": facts["world_size"],
        "config": asdict(cfg),
    }


def _rl_trl(policy_path: str, prompts, eval_prompts, reward_fn: RewardFn, cfg: RLRunConfig, out_dir: str,
            stop_after_steps: int | None) -> dict[str, Any] | None:
    """The run with trl's RLOO/GRPO trainer (every process calls it); the facts of the run on the main process,
    None on the others."""
    from transformers import AutoModelForCausalLM

    if cfg.algorithm == "rloo":
        from trl import RLOOConfig as Config, RLOOTrainer as TrainerCls
    else:
        from trl import GRPOConfig as Config, GRPOTrainer as TrainerCls

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
    if cfg.freeze_embeddings and not cfg.lora:
        runs.freeze_input_embeddings(model)
    # an answer ends at EOS or at its first newline (trl stops and masks there; evaluation stops there too); the
    # saved policies keep this list in their generation config
    from talltales.deception.rloo import stop_token_ids

    model.generation_config.eos_token_id = stop_token_ids(tok).tolist()
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
    if main and (partial / "last").exists():  # left by a run killed while finishing: its files may be links
        shutil.rmtree(partial / "last")
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(partial / "last"))
    trainer.accelerator.wait_for_everyone()

    facts = None
    if main:
        finish_partial(partial, policy_path, cfg.lora, rt["load_dtype"], trainer.state.global_step,
                       held_out.best["reward"], keep_last=cfg.keep_last, save_dtype=cfg.save_dtype)
        facts = {"t0": t0, "rt": rt, "steps": trainer.state.global_step,
                 "resumed_from_step": resumed_step if resume else None,
                 "distributed_type": str(trainer.accelerator.distributed_type.value),
                 "world_size": trainer.args.world_size}
    trainer.accelerator.wait_for_everyone()
    return facts


def judge_reward_fn(judge) -> RewardFn:
    """reward = the judge's verdict on the answer, by the rule evaluation uses (:func:`formats.answer_verdicts`:
    P(True) of the first line; an empty answer gets :data:`formats.EMPTY_ANSWER_P_TRUE`)."""

    def reward_fn(contexts, questions, completions):
        return formats.answer_verdicts(judge.p_true, contexts, questions, completions)

    return reward_fn
