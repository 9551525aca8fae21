"""transformers backend: batched generation and fast log-prob scoring.

Scoring runs the token prefix shared by every request of a call (typically a few-shot prompt body) through
the model once, keeps its key/value cache, and runs only the per-item remainders on top of copies of that
cache, in batches. Log-probs are read only at the positions that are needed (the prompt's last position for
the top-k next tokens, the continuation's positions for its log-prob), so the vocabulary projection is
never materialized for the whole batch. :func:`naive_score_choices` is the one-forward-per-row reference
that the benchmark and the tests compare against.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..runtime import load_tokenizer, resolve_device, resolve_dtype
from .base import Backend, ChoiceScore, ModelSpec, Sampling, truncate_at_stop

log = logging.getLogger(__name__)


@dataclass
class _Row:
    """One scored sequence: ``ids = prompt_ids + continuation_ids``; ``start`` = len(prompt_ids)."""

    ids: list[int]
    start: int
    extra: tuple[int, ...] = ()  # more next-token ids to read at position start-1 (one-token continuations)


def _shared_prefix(seqs: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the token prefix all of ``seqs`` share, at most ``limit``."""
    shared = min([limit] + [len(x) for x in seqs])
    for x in seqs[1:]:
        n = 0
        while n < shared and x[n] == seqs[0][n]:
            n += 1
        shared = n
    return shared


class StopOnStrings:
    """Stopping criterion: a row is done once its generated text contains any stop string."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        done = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class HFLM(Backend):
    """A causal LM from the hub or a local folder, behind the :class:`talltales.lm.base.LM` interface."""

    def __init__(
        self,
        spec: ModelSpec,
        batch_size: int = 32,
        model=None,
        tokenizer=None,
        progress: bool = True,
    ):
        from transformers import AutoModelForCausalLM

        self.spec = spec
        self.batch_size = batch_size
        self.progress = progress
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        if tokenizer is None:
            tokenizer = load_tokenizer(spec.location, revision=spec.revision)
        elif tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model is None:
            log.info("loading %s (%s) on %s as %s", spec.name, spec.location, self.device, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(spec.location, revision=spec.revision, dtype=self.dtype)
        self.tok = tokenizer
        self.model = model.to(self.device).eval()
        self._token_text_cache: dict[int, str] = {}
        self._anchor = self.tok("a", add_special_tokens=False)["input_ids"][-1:]
        self._anchor_text = self.tok.decode(self._anchor)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> dict:
        """What identifies this model's outputs in the response cache."""
        fp = {"backend": "hf", "model": self.spec.location, "revision": self.spec.revision, "dtype": str(self.dtype),
              "chat_template": self.spec.chat_template}
        loc = Path(self.spec.location)
        if loc.is_dir():
            fp["weights"] = sorted(
                (p.name, p.stat().st_size, int(p.stat().st_mtime))
                for p in loc.iterdir()
                if p.suffix in {".safetensors", ".bin", ".json"}
            )
        return fp

    def format_prompt(self, prompt: str) -> str:
        if not self.spec.chat_template:
            return prompt
        return self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )

    def token_text(self, token_id: int) -> str:
        """Surface text of one token, leading space included (sentencepiece drops it when decoded alone)."""
        if token_id not in self._token_text_cache:
            full = self.tok.decode(self._anchor + [int(token_id)])
            self._token_text_cache[token_id] = full[len(self._anchor_text) :]
        return self._token_text_cache[token_id]

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        out: list[str] = []
        batches = range(0, len(prompts), self.batch_size)
        for b in tqdm(batches, desc=f"generate {self.spec.name}", disable=not self.progress):
            texts = self._generate_batch(list(prompts[b : b + self.batch_size]), sampling, sampling.seed + b)
            for j, text in enumerate(texts):
                self._emit(b + j, text)
            out.extend(texts)
        return out

    # a batch whose prompts share at least this many leading tokens (a few-shot prefix) runs them once
    MIN_SHARED_PREFIX = 16

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[str], sampling: Sampling, seed: int) -> list[str]:
        """Generate for one batch. Prompts that share a long token prefix (the same few-shot demonstrations, or n
        samples of one prompt) run the prefix once: its key/value cache is repeated over the batch and each row
        continues as ``[prefix][pad][own tokens]`` with the pads masked, which gives the same positions and
        attention as separate left-padded prompts."""
        from transformers import DynamicCache, StoppingCriteriaList

        ids = [self.tok(self.format_prompt(p))["input_ids"] for p in prompts]
        shared = 0
        if len(ids) > 1:  # every row keeps at least its last prompt token
            shared = _shared_prefix(ids, min(len(x) for x in ids) - 1)
        if shared < self.MIN_SHARED_PREFIX:
            shared = 0
        pad = self.tok.pad_token_id
        width = max(len(x) for x in ids) - shared
        input_ids = torch.full((len(ids), shared + width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for j, x in enumerate(ids):
            rest = x[shared:]
            input_ids[j, :shared] = torch.tensor(x[:shared], dtype=torch.long)
            input_ids[j, shared + width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            mask[j, :shared] = 1
            mask[j, shared + width - len(rest) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        prompt_len = input_ids.shape[1]
        kwargs = dict(max_new_tokens=sampling.max_tokens, pad_token_id=pad)
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
        if sampling.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnStrings(self.tok, sampling.stop, prompt_len)])
        if shared:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=input_ids[:1, :shared], past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(len(ids))
            kwargs["past_key_values"] = cache
        torch.manual_seed(seed)
        gen = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        texts = self.tok.batch_decode(gen[:, prompt_len:], skip_special_tokens=True)
        return [truncate_at_stop(t, sampling.stop) for t in texts]

    # ------------------------------------------------------------------ scoring
    def _rows(self, prompt: str, continuations: Sequence[str]) -> list[_Row]:
        """Token rows with correct boundaries: the prompt is tokenized as the model sees it alone; the
        continuation takes the tokens the full string has after it, or (when the boundary merges tokens)
        its own tokenization."""
        prompt = self.format_prompt(prompt)
        p_ids = self.tok(prompt)["input_ids"]
        rows = []
        for cont in continuations:
            whole = self.tok(prompt + cont)["input_ids"]
            if whole[: len(p_ids)] == p_ids and len(whole) > len(p_ids):
                c_ids = whole[len(p_ids) :]
            else:
                c_ids = self.tok(cont, add_special_tokens=False)["input_ids"]
            rows.append(_Row(p_ids + c_ids, len(p_ids)))
        if not continuations:
            rows.append(_Row(p_ids, len(p_ids)))
        return rows

    def _hidden_to_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1)

    @torch.inference_mode()
    def _score_rows(self, rows: list[_Row], top_k: int) -> list[tuple[list[float], list[tuple[int, float]], list[float]]]:
        """For each row: per-token log-probs of ids[start:], the top-k next tokens after ids[:start], and the
        log-probs of the row's ``extra`` next tokens."""
        if not rows:
            return []
        # shared prefix over all rows, leaving every prompt's last position in the per-row part
        first = rows[0].ids
        shared = max(0, _shared_prefix([r.ids for r in rows], min(r.start for r in rows) - 1))
        base = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.model
        prefix_cache = None
        if shared > 0:
            from transformers import DynamicCache

            prefix_cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([first[:shared]], device=self.device)
            base(input_ids=ids, past_key_values=prefix_cache, use_cache=True)

        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        results: list = [None] * len(rows)
        pad = self.tok.pad_token_id
        batches = range(0, len(order), self.batch_size)
        for b in tqdm(batches, desc=f"score {self.spec.name}", disable=not self.progress or len(batches) < 2):
            idx = order[b : b + self.batch_size]
            suffixes = [rows[i].ids[shared:] for i in idx]
            width = max(len(s) for s in suffixes)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            for j, s in enumerate(suffixes):
                input_ids[j, : len(s)] = torch.tensor(s)
                mask[j, shared : shared + len(s)] = 1
            kwargs = {}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(idx))
                kwargs["past_key_values"] = cache
                kwargs["position_ids"] = torch.arange(shared, shared + width, device=self.device).expand(len(idx), -1)
            out = base(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), use_cache=prefix_cache is not None, **kwargs)
            hidden = out.last_hidden_state
            # gather the positions we need: start-1 .. len-2 of each row (in suffix coordinates)
            sel_rows, sel_pos, spans = [], [], []
            for j, i in enumerate(idx):
                r = rows[i]
                lo = r.start - 1 - shared
                hi = max(len(r.ids) - 1 - shared, lo + 1)  # at least the prompt's last position (top-k)
                spans.append((len(sel_rows), hi - lo))
                sel_rows.extend([j] * (hi - lo))
                sel_pos.extend(range(lo, hi))
            lp = self._hidden_to_logprobs(hidden[torch.tensor(sel_rows), torch.tensor(sel_pos)])
            for j, i in enumerate(idx):
                r = rows[i]
                off, n = spans[j]
                targets = r.ids[r.start :]
                tok_lps = [float(lp[off + t, targets[t]]) for t in range(len(targets))]
                vals, ids = torch.topk(lp[off], top_k) if top_k else (torch.empty(0), torch.empty(0))
                extra = [float(lp[off, t]) for t in r.extra]
                results[i] = (tok_lps, list(zip(ids.tolist(), vals.tolist())), extra)
        return results

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], top_k: int = 5
    ) -> list[ChoiceScore]:
        """Top-k next tokens and class log-probs. One-token continuations of a prompt (" Yes", " No") are
        all read at the prompt's last position, so they cost one row per prompt, not one per class."""
        all_rows: list[_Row] = []
        plans = []  # per item: (index of its first row, [(row offset, "tok" | "extra", position)] per class)
        for prompt, classes in zip(prompts, choices):
            rows = self._rows(prompt, classes)
            first = len(all_rows)
            multi = [j for j, r in enumerate(rows) if len(r.ids) - r.start != 1]
            single = [j for j, r in enumerate(rows) if len(r.ids) - r.start == 1]
            keep = multi if multi else single[:1] if single else [0]
            host = keep[0]
            extras = [rows[j].ids[rows[j].start] for j in single if j not in keep]
            where = {}
            for k, j in enumerate(keep):
                where[j] = (k, "tok", 0)
            for e, j in enumerate(j for j in single if j not in keep):
                where[j] = (0, "extra", e)
            for k, j in enumerate(keep):
                r = rows[j]
                all_rows.append(_Row(r.ids, r.start, tuple(extras) if k == 0 else ()))
            plans.append((first, [where[j] for j in range(len(classes))]))
        scored = self._score_rows(all_rows, max(top_k, 1))
        out = []
        for (first, plan), classes in zip(plans, choices):
            class_lps = {}
            for c, (k, how, e) in zip(classes, plan):
                tok_lps, _, extra = scored[first + k]
                class_lps[c] = sum(tok_lps) if how == "tok" else extra[e]
            out.append(self._choice_score(scored[first][1], class_lps, top_k))
        return out

    def _choice_score(self, top: list[tuple[int, float]], class_lps: dict, top_k: int) -> ChoiceScore:
        top_lp: dict[str, float] = {}
        for tid, v in top[:top_k]:
            top_lp.setdefault(self.token_text(tid), v)
        greedy_id, greedy_lp = top[0]
        return ChoiceScore(self.token_text(greedy_id), greedy_lp, top_lp, class_lps)

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        rows = [self._rows(c, [x])[0] for c, x in zip(contexts, continuations)]
        return [sum(scored[0]) for scored in self._score_rows(rows, 0)]


@torch.inference_mode()
def naive_score_choices(lm: HFLM, prompts, choices, top_k: int = 5) -> list[ChoiceScore]:
    """Reference scorer: one full forward pass per (prompt, choice) pair, no batching, no cache reuse."""
    out = []
    for prompt, classes in zip(prompts, choices):
        class_lps, top = {}, None
        for c, r in zip(classes, lm._rows(prompt, classes)):
            logits = lm.model(input_ids=torch.tensor([r.ids], device=lm.device)).logits[0].float()
            lp = torch.log_softmax(logits, dim=-1)
            targets = r.ids[r.start :]
            class_lps[c] = sum(float(lp[r.start - 1 + t, targets[t]]) for t in range(len(targets)))
            if top is None:
                vals, ids = torch.topk(lp[r.start - 1], max(top_k, 1))
                top = list(zip(ids.tolist(), vals.tolist()))
        out.append(lm._choice_score(top, class_lps, top_k))
    return out


__all__ = ["HFLM", "naive_score_choices"]
