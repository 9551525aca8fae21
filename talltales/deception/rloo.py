"""The project's RLOO step: ``G`` samples per prompt that share one prefill, and a policy gradient through that
shared prefix.

One step on ``B`` prompts:

1. **Sample** (no gradient): the ``B`` prompts are run once; their key/value cache is repeated ``G`` times and
   ``G`` answers per prompt are decoded from it, each ending at the first stop token (EOS, or any token whose text
   holds a newline: the answer is the first line, as in evaluation) or after ``max_new_tokens``.
2. **Reward**: ``reward_fn`` scores each answer; with ``kl_beta > 0`` the sequence KL to the reference policy
   (sum over the answer's tokens of log pi - log pi_ref, the first-order estimate RLOO uses) is subtracted.
3. **Advantage**: each reward minus the mean of the other ``G - 1`` rewards of its prompt (leave-one-out).
4. **Update**: the loss is ``-mean(advantage * log pi(answer))``. Its gradient is computed with the prompts run
   once more (with gradient) and their cache repeated ``G`` times, so a prompt's tokens cost one forward and one
   backward pass however many answers share it; only the last prompt position and the answers' positions
   produce logits (``logits_to_keep``), which matters for large vocabularies.

With one optimisation pass per batch of samples (as here) the policy-ratio clipping of PPO-style losses is the
identity, so this is the RLOO gradient of trl's ``RLOOTrainer`` with ``num_iterations=1``; what differs is the
cost: trl runs every prompt ``G`` times in each of its forward passes (generation, old log-probs, reference
log-probs, loss). ``bench/rl_throughput.py`` measures both on the same model and prompts.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[str]], Sequence[float]]


def stop_token_ids(tok) -> torch.Tensor:
    """Ids that end an answer: the EOS token(s) and every token whose text contains a newline."""
    ids = set()
    eos = tok.eos_token_id
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    for i in range(len(tok)):
        if "\n" in tok.decode([i]):
            ids.add(i)
    return torch.tensor(sorted(ids), dtype=torch.long)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor):
    """One forward pass over left-padded prompts: (logits of the last position [B, V], cache)."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].float(), out.past_key_values


@torch.no_grad()
def prefix_cache(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
    """The key/value cache of every prompt token but the last (no gradient), for :func:`sample` and
    :func:`answer_logps` to share."""
    if prompt_ids.size(1) < 2:
        raise ValueError("prompts must be at least two tokens long")
    out = model(input_ids=prompt_ids[:, :-1], attention_mask=prompt_mask[:, :-1],
                position_ids=_positions(prompt_mask)[:, :-1], use_cache=True, logits_to_keep=1)
    return out.past_key_values


def _continue(model, prefix, prompt_mask: torch.Tensor, tokens: torch.Tensor, G: int):
    """Logits [B*G, k, V] of ``tokens`` ([B*G, k]: the last prompt token, then answer tokens) run on a copy of
    ``prefix`` (from :func:`prefix_cache`, B rows) repeated ``G`` times; also the extended cache."""
    cache = copy.deepcopy(prefix)
    if G > 1:
        cache.batch_repeat_interleave(G)
    k = tokens.size(1)
    mask = prompt_mask.repeat_interleave(G, dim=0)
    if k > 1:
        mask = torch.cat([mask, torch.ones(mask.size(0), k - 1, dtype=mask.dtype, device=mask.device)], dim=1)
    out = model(input_ids=tokens, attention_mask=mask, position_ids=_positions(mask)[:, -k:], past_key_values=cache,
                use_cache=True)
    return out.logits.float(), out.past_key_values


@dataclass
class Samples:
    """``B * G`` answers (prompt ``i`` owns rows ``i*G .. i*G+G-1``), right-padded with ``pad_id``; ``mask`` is 1
    on an answer's tokens up to and including its stop token."""

    ids: torch.Tensor  # [B*G, T]
    mask: torch.Tensor  # [B*G, T]


@torch.no_grad()
def sample(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, G: int, max_new_tokens: int,
           temperature: float, stop_ids: torch.Tensor, pad_id: int, generator: torch.Generator | None = None,
           prefix=None) -> Samples:
    """``G`` answers per prompt from one prefill (``temperature`` 0: greedy, then ``G`` should be 1).
    ``prefix``: the prompts' :func:`prefix_cache` when it is already computed."""
    if prefix is None:
        prefix = prefix_cache(model, prompt_ids, prompt_mask)
    last = prompt_ids[:, -1:]
    logits, cache = _continue(model, prefix, prompt_mask, last, 1)
    logits = logits[:, -1]
    if G > 1:
        cache.batch_repeat_interleave(G)
        logits = logits.repeat_interleave(G, dim=0)
    mask = prompt_mask.repeat_interleave(G, dim=0)
    n = logits.size(0)
    device = logits.device
    stop_ids = stop_ids.to(device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    out_ids, out_mask = [], []
    for t in range(max_new_tokens):
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out_ids.append(nxt)
        out_mask.append(~done)
        done = done | torch.isin(nxt, stop_ids)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                    past_key_values=cache, use_cache=True)
        logits, cache = out.logits[:, -1].float(), out.past_key_values
    return Samples(torch.stack(out_ids, 1), torch.stack(out_mask, 1).long())


def answer_logps(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, samples: Samples, G: int,
                 temperature: float = 1.0, prefix=None) -> torch.Tensor:
    """Per-token log-probs [B*G, T] of the sampled answers (0 where ``samples.mask`` is 0), with gradient when
    enabled. Without ``prefix`` the prompts run once (with gradient) and their cache is shared by their ``G``
    answers: the exact gradient. With ``prefix`` (a :func:`prefix_cache`, no gradient) only the last prompt token
    and the answers run: the keys and values of the earlier prompt tokens are held constant (the gradient of the
    answer's positions and of the position that predicts its first token; see ``prefix_gradient``)."""
    if prefix is None:
        first, cache = _prefill(model, prompt_ids, prompt_mask)
        if G > 1:
            cache.batch_repeat_interleave(G)
            first = first.repeat_interleave(G, dim=0)
        logits = first[:, None]
        T = samples.ids.size(1)
        if T > 1:
            mask = torch.cat([prompt_mask.repeat_interleave(G, dim=0), torch.ones_like(samples.ids[:, :-1])], dim=1)
            out = model(input_ids=samples.ids[:, :-1], attention_mask=mask, position_ids=_positions(mask)[:, -(T - 1):],
                        past_key_values=cache, use_cache=True)
            logits = torch.cat([logits, out.logits.float()], dim=1)
    else:
        tokens = torch.cat([prompt_ids[:, -1:].repeat_interleave(G, dim=0), samples.ids[:, :-1]], dim=1)
        logits, _ = _continue(model, prefix, prompt_mask, tokens, G)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, samples.ids[..., None]).squeeze(-1)
    return logp * samples.mask


def leave_one_out(rewards: torch.Tensor, G: int) -> torch.Tensor:
    """Each reward minus the mean of the other ``G - 1`` rewards of its prompt (rows grouped by ``G``)."""
    r = rewards.view(-1, G)
    baseline = (r.sum(1, keepdim=True) - r) / (G - 1)
    return (r - baseline).view(-1)


@dataclass
class StepResult:
    loss: float
    reward: float  # mean judge reward of the samples (before the KL term)
    kl: float  # mean sequence KL to the reference (0 without a reference)
    answer_tokens: float  # mean tokens per answer (stop token included)
    completions: int
    answers: list[str]


def rloo_step(model, ref: Callable[[], object] | None, optimizer, tok, contexts: list[str], questions: list[str],
              prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, reward_fn: RewardFn, *, G: int,
              max_new_tokens: int, temperature: float, kl_beta: float, stop_ids: torch.Tensor,
              max_grad_norm: float | None, prefix_gradient: bool = True,
              generator: torch.Generator | None = None) -> StepResult:
    """One RLOO update (see the module doc). ``ref``: a context manager factory under which ``model`` computes the
    reference policy (e.g. a LoRA model with its adapter disabled), or None for no KL term. ``prefix_gradient``
    False: one prefill serves sampling and the update, and the gradient treats the keys and values of all prompt
    tokens but the last as constant (:func:`answer_logps`)."""
    pad_id = tok.pad_token_id
    model.eval()  # no dropout: sampling, reference and gradient see the same function
    prefix = prefix_cache(model, prompt_ids, prompt_mask)
    smp = sample(model, prompt_ids, prompt_mask, G, max_new_tokens, temperature, stop_ids, pad_id, generator,
                 prefix=prefix)
    texts = tok.batch_decode(smp.ids * smp.mask + pad_id * (1 - smp.mask), skip_special_tokens=True)
    ctx = [c for c in contexts for _ in range(G)]
    qs = [q for q in questions for _ in range(G)]
    rewards = torch.tensor([float(r) for r in reward_fn(ctx, qs, texts)], dtype=torch.float32)
    logp = answer_logps(model, prompt_ids, prompt_mask, smp, G, temperature,
                        prefix=None if prefix_gradient else prefix)
    kl = torch.zeros_like(rewards)
    if ref is not None and kl_beta:
        with torch.no_grad(), ref():
            ref_logp = answer_logps(model, prompt_ids, prompt_mask, smp, G, temperature,
                                    prefix=prefix_cache(model, prompt_ids, prompt_mask))
        kl = (logp.detach() - ref_logp).sum(1).float().cpu()
    adv = leave_one_out(rewards - kl_beta * kl, G).to(logp.device)
    loss = -(adv * logp.sum(1)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    return StepResult(float(loss.detach()), float(rewards.mean()), float(kl.mean()),
                      float(smp.mask.sum(1).float().mean()), len(texts), texts)


def encode_prompts(tok, prompts: Sequence[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def greedy_answers(model, tok, prompts: Sequence[str], max_new_tokens: int, stop_ids: torch.Tensor,
                   batch_size: int, device) -> list[str]:
    """Greedy answers (first line, as evaluation takes them) to ``prompts``, ``batch_size`` at a time."""
    model.eval()
    out: list[str] = []
    for b in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tok, prompts[b:b + batch_size], device)
        smp = sample(model, ids, mask, 1, max_new_tokens, 0.0, stop_ids, tok.pad_token_id)
        out.extend(tok.batch_decode(smp.ids * smp.mask + tok.pad_token_id * (1 - smp.mask),
                                    skip_special_tokens=True))
    return out


# ---------------------------------------------------------------------------------------------- the run
def train(policy_path: str, prompts, eval_prompts, reward_fn: RewardFn, cfg, out_dir: str, *,
          stop_after_steps: int | None = None) -> dict:
    """RL of ``policy_path`` with :func:`rloo_step` in this process (CPU or one GPU), under the run-directory
    protocol of :mod:`talltales.deception.runs`: checkpoints every ``cfg.checkpoint_every`` steps (policy or
    adapter, optimizer, random state), resume from the newest complete one, the held-out reward (greedy answers,
    the same reward) at step 0, every ``cfg.eval_every`` steps and at the end, per prompt in ``heldout.jsonl``;
    ``best/`` = the policy of the best held-out reward at steps >= ``eval_every``, ``last/`` = the final one."""
    import json
    import math
    import random
    import shutil
    import time
    from pathlib import Path

    import numpy as np
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, get_scheduler

    from talltales.deception import formats, runs
    from talltales.deception.rl import finish_partial, log_heldout, promote_best, recover_best
    from talltales.deception.settings import peft_config, runtime
    from talltales.io import write_json
    from talltales.runtime import load_tokenizer

    t0 = time.time()
    out, partial = Path(out_dir), runs.partial_dir(out_dir)
    rt = runtime(cfg)
    device = torch.device(rt["device"])
    resume, step = runs.prepare_partial(partial, True, runs.fingerprint(
        "rl", policy_path, cfg, prompts[["context", "question"]], eval_prompts[["context", "question"]]))
    recover_best(partial, step)
    resumed_step = step if resume else None
    writer = runs.MetricsWriter(partial / runs.METRICS_FILE, True)

    torch.manual_seed(cfg.seed)
    tok = load_tokenizer(policy_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=rt["load_dtype"]).to(device)
    ref = None
    if cfg.lora:
        from peft import PeftModel, get_peft_model

        if resume:
            model = PeftModel.from_pretrained(model, str(Path(resume) / "policy"), is_trainable=True)
        else:
            model = get_peft_model(model, peft_config(cfg))
        ref = model.disable_adapter
    else:
        if resume:
            model = AutoModelForCausalLM.from_pretrained(str(Path(resume) / "policy"), dtype=rt["load_dtype"]).to(device)
        if cfg.kl_beta:
            frozen = AutoModelForCausalLM.from_pretrained(policy_path, dtype=rt["load_dtype"]).to(device).eval()
            frozen.requires_grad_(False)

            class _Ref:  # the reference policy: the starting weights, run under the policy's calls
                def __init__(self):
                    self.saved = None

                def __enter__(self):
                    self.saved = model.forward
                    model.forward = frozen.forward

                def __exit__(self, *exc):
                    model.forward = self.saved

            ref = _Ref
        if cfg.freeze_embeddings:
            runs.freeze_input_embeddings(model)
    model.config.use_cache = True
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    warm = int(cfg.warmup_ratio * cfg.steps) if cfg.warmup_ratio < 1 else int(cfg.warmup_ratio)
    sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=warm, num_training_steps=cfg.steps)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    order_rng = random.Random(cfg.seed)
    order: list[int] = []
    best = {"step": None, "reward": -math.inf}
    if (partial / "best" / "best.json").exists():
        best = json.loads((partial / "best" / "best.json").read_text())
    if resume:
        state = torch.load(Path(resume) / "state.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        order_rng.setstate(state["order_rng"])
        order = state["order"]
        torch.set_rng_state(state["torch_rng"])
    stop = stop_token_ids(tok)
    contexts = [str(c) for c in prompts["context"]]
    questions = [str(q) for q in prompts["question"]]
    ev_ctx = [str(c) for c in eval_prompts["context"]]
    ev_q = [str(q) for q in eval_prompts["question"]]
    ev_fruit = [int(f) for f in eval_prompts["fruit"]] if "fruit" in eval_prompts else [0] * len(ev_ctx)
    ev_prompts = [formats.qa_prompt(c, q) for c, q in zip(ev_ctx, ev_q)]

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(rt["bf16"]))

    def evaluate(at: int) -> float:
        t = time.time()
        with autocast():
            answers = greedy_answers(model, tok, ev_prompts, cfg.max_new_tokens, stop, cfg.eval_batch_size, device)
        rewards = [float(r) for r in reward_fn(ev_ctx, ev_q, answers)]
        return log_heldout(writer, partial, at, rewards, answers, ev_fruit, time.time() - t)

    pending = None

    def save_policy(folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder)
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))

    if step == 0:
        evaluate(0)
    log.info("RL (talltales RLOO, shared prefill) of %s: %d steps x %d prompts x %d samples, KL beta %g, lr %g, %s%s",
             policy_path, cfg.steps, cfg.batch_size, cfg.num_generations, cfg.kl_beta, cfg.lr, rt["device"],
             ", LoRA" if cfg.lora else "")
    bar = tqdm(total=cfg.steps, initial=step, desc="RL steps")
    while step < cfg.steps:
        if stop_after_steps is not None and step >= stop_after_steps:
            raise KeyboardInterrupt(f"stop_after_steps={stop_after_steps}")
        batch = []
        while len(batch) < cfg.batch_size:
            if not order:
                order = list(range(len(contexts)))
                order_rng.shuffle(order)
            batch.append(order.pop())
        ctx, qs = [contexts[i] for i in batch], [questions[i] for i in batch]
        ids, mask = encode_prompts(tok, [formats.qa_prompt(c, q) for c, q in zip(ctx, qs)], device)
        t = time.time()
        with autocast():
            res = rloo_step(model, ref, opt, tok, ctx, qs, ids, mask, reward_fn, G=cfg.num_generations,
                            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, kl_beta=cfg.kl_beta,
                            stop_ids=stop, max_grad_norm=cfg.max_grad_norm, prefix_gradient=cfg.prefix_gradient,
                            generator=gen)
        sched.step()
        step += 1
        bar.update(1)
        if step % cfg.logging_steps == 0:
            writer.write({"step": step, "loss": res.loss, "reward": res.reward, "kl": res.kl,
                          "answer_tokens": res.answer_tokens, "lr": sched.get_last_lr()[0],
                          "step_seconds": round(time.time() - t, 3)})
        if step % cfg.eval_every == 0 or step >= cfg.steps:
            r = evaluate(step)
            if r > best["reward"] and (pending is None or r > pending["reward"]):
                save_policy(partial / "best-pending")
                pending = {"step": step, "reward": r}
                write_json(partial / "best-pending" / "best.json", pending)
        if step % cfg.checkpoint_every == 0 or step >= cfg.steps:
            ck = partial / f"{runs.CHECKPOINT_PREFIX}{step}"
            save_policy(ck / "policy")
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
                        "order_rng": order_rng.getstate(), "order": order, "torch_rng": torch.get_rng_state()},
                       ck / "state.pt")
            write_json(ck / "trainer_state.json", {"global_step": step})  # written last: the checkpoint is complete
            for s, p, _ in runs.checkpoints(partial)[:-1]:
                shutil.rmtree(p)
            if pending is not None:
                promote_best(partial)
                best, pending = pending, None
    bar.close()
    save_policy(partial / "last")
    last_r = [r for r in runs.read_metrics(partial / runs.METRICS_FILE) if "heldout_reward" in r][-1]
    finish_partial(partial, policy_path, cfg.lora, rt["load_dtype"], step, last_r["heldout_reward"],
                   keep_last=cfg.keep_last, save_dtype=cfg.save_dtype)
    return {"t0": t0, "rt": rt, "steps": step, "resumed_from_step": resumed_step,
            "world_size": 1, "distributed_type": "NO"}
