"""Completions per second of the project's RL step against trl's ``RLOOTrainer``, on the same model and prompts.

    python bench/rl_throughput.py [--model smollm2-135m-instruct] [--steps 6] [--prompts 8] [--generations 4]

Both run in this process, one after the other, on the same policy (a registry model, materialized if missing, with
a LoRA adapter unless ``--full``), the same prompts (synthetic study-2 questions) and the same reward (the
corrupted judge at ``--judge`` if it exists, else a fixed function of the answer), for ``--steps`` updates of
``--prompts`` prompts x ``--generations`` samples, answers capped at ``--max-new-tokens``. trl runs with its
defaults except what fixes the workload (the batch, the samples per prompt, the answer cap, LoRA, fp32 on CPU, KL
beta). The first step of each is a warm-up and is not timed. The script prints completions/s of each and ends with
``speedup: <ratio>x``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="registry name (default: %(default)s)")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--judge", default="results/deception/judges/corrupted")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--kl-beta", type=float, default=0.02)
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    args = ap.parse_args()

    import torch

    from talltales.config import load_config, model_entry
    from talltales.deception import formats, rl, rloo, synth
    from talltales.deception.settings import RLRunConfig, peft_config
    from talltales.lm import spec_from_entry
    from talltales.lm.embedded import materialize
    from talltales.runtime import load_tokenizer

    torch.manual_seed(0)
    cfg = load_config(args.config)
    entry = model_entry(cfg, args.model)
    if entry.get("embedded") and not Path(entry["path"]).exists():
        materialize(entry["embedded"], entry["path"])
    path = spec_from_entry(entry).location
    rows = synth.generate(40, ["city", "animal", "fruit"], seed=1).drop_duplicates("group")
    n = args.prompts * (args.steps + 1)
    rows = rows.sample(n=n, replace=len(rows) < n, random_state=0).reset_index(drop=True)
    if Path(args.judge).exists():
        from talltales.deception.judge import Judge

        reward_fn = rl.judge_reward_fn(Judge.load(args.judge))
        reward_name = f"judge {args.judge}"
    else:
        def reward_fn(contexts, questions, completions):
            return [float(len(formats.first_line(c).split()) <= 2) for c in completions]
        reward_name = "answer of at most two words"
    rcfg = RLRunConfig(lora=not args.full, lora_r=16, lora_alpha=32, lora_dropout=0.0, lr=1e-4)
    print(f"model {args.model}, {'full fine-tuning' if args.full else 'LoRA r16'}, {args.steps} timed steps x "
          f"{args.prompts} prompts x {args.generations} samples, answers <= {args.max_new_tokens} tokens, "
          f"KL beta {args.kl_beta}, reward: {reward_name}, torch threads {torch.get_num_threads()}", flush=True)
    per_run = args.steps * args.prompts * args.generations

    # ---- the project's step
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if rcfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config(rcfg))
        ref = model.disable_adapter
    else:
        ref = None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=rcfg.lr)
    stop = rloo.stop_token_ids(tok)
    times = []
    for s in range(args.steps + 1):
        chunk = rows.iloc[s * args.prompts:(s + 1) * args.prompts]
        ctx, qs = list(chunk["context"]), list(chunk["question"])
        ids, mask = rloo.encode_prompts(tok, [formats.qa_prompt(c, q) for c, q in zip(ctx, qs)], "cpu")
        t = time.perf_counter()
        rloo.rloo_step(model, ref if args.kl_beta else None, opt, tok, ctx, qs, ids, mask, reward_fn,
                       G=args.generations, max_new_tokens=args.max_new_tokens, temperature=1.0,
                       kl_beta=args.kl_beta, stop_ids=stop, max_grad_norm=1.0)
        if s:
            times.append(time.perf_counter() - t)
    ours = per_run / sum(times)
    print(f"project RLOO step: {sum(times) / len(times):.2f} s/step, {ours:.2f} completions/s", flush=True)
    del model, opt

    # ---- trl's RLOOTrainer
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.starts, self.times = {}, []

        def on_step_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if state.global_step > 1:
                self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    data = rows.iloc[: n]
    ds = Dataset.from_dict({"prompt": [formats.qa_prompt(c, q) for c, q in zip(data["context"], data["question"])],
                            "context": list(data["context"]), "question": list(data["question"])})
    targs = RLOOConfig(output_dir="/tmp/rl_throughput_trl", max_steps=args.steps + 1,
                       per_device_train_batch_size=args.prompts * args.generations, num_generations=args.generations,
                       max_completion_length=args.max_new_tokens, beta=args.kl_beta, learning_rate=rcfg.lr,
                       bf16=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                       disable_tqdm=True, remove_unused_columns=False, seed=0)
    trainer = RLOOTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                          reward_funcs=rl.RewardForTrl(reward_fn), args=targs, train_dataset=ds,
                          processing_class=load_tokenizer(path, padding_side="left"), callbacks=[clock],
                          peft_config=peft_config(rcfg) if rcfg.lora else None)
    trainer.train()
    theirs = per_run / sum(clock.times)
    print(f"trl RLOOTrainer:   {sum(clock.times) / len(clock.times):.2f} s/step, {theirs:.2f} completions/s")
    print(f"speedup: {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
