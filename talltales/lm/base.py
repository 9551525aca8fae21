"""One request abstraction over every language-model backend.

A backend answers three kinds of request:

* ``generate(prompts, sampling)`` -> one completion string per prompt;
* ``score_choices(prompts, choices, top_k)`` -> for each prompt the top-k next tokens (with log-probs, as an
  OpenAI completions ``choices[0]`` object would carry them) and the log-probability of every choice string
  as a full continuation of the prompt;
* ``loglikelihood(contexts, continuations)`` -> log P(continuation | context) for each pair.

Backends are built from a model registry entry (:class:`ModelSpec`) with :func:`talltales.lm.load_lm`, which
puts every backend behind the one response cache (:class:`talltales.lm.cache.CachingLM`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry (``models:`` in config.yaml)."""

    name: str
    backend: str  # "hf" | "openai"
    kind: str  # "base" | "instruct"
    params: float | None = None  # parameter count
    id: str | None = None  # hub id (hf) or API model name (openai)
    path: str | None = None  # local folder (hf); materialized embedded models get one
    embedded: str | None = None  # PyPI package shipping a GGUF of this model
    revision: str | None = None
    chat_template: bool = False  # wrap prompts in the model's chat template
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    base_url: str | None = None  # openai: any OpenAI-compatible endpoint
    api_key_env: str | None = None  # openai: NAME of the environment variable that holds the key
    endpoint: str = "completions"  # openai: completions | chat
    extra_body: dict = field(default_factory=dict)  # extra request fields (e.g. logit_bias)
    max_concurrency: int = 4
    max_retries: int = 6
    timeout: float = 60.0
    price_per_1k: dict = field(default_factory=dict)  # {"input": usd, "output": usd} for the cost estimate
    tokenizer: str | None = None  # tiktoken encoding for estimates (default cl100k_base)
    # openai: the top-level `spending` config ({"max_usd": cap or None, "ledger": path}), copied into the entry
    # by talltales.config.model_entry where it applies (talltales.lm.spend.spending_for); {}: not metered
    spending: dict = field(default_factory=dict)

    @property
    def location(self) -> str:
        """What the hf backend loads: the local folder if any, else the hub id."""
        loc = self.path or self.id
        if not loc:
            raise ValueError(f"model {self.name!r}: needs 'path' or 'id'")
        return loc


def spec_from_entry(entry: dict[str, Any]) -> ModelSpec:
    """The spec of a registry entry as stages receive it (``talltales.config.model_entry``: it carries its name)."""
    known = set(ModelSpec.__dataclass_fields__)
    return ModelSpec(**{k: v for k, v in entry.items() if k in known})


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of a generation request."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class ChoiceScore:
    """A scored prompt, shaped like an OpenAI completions ``choices[0]`` object plus class log-probs.

    ``top_logprobs`` holds the k most likely next tokens after the prompt (token text -> log-prob);
    ``class_logprobs`` maps each choice string to log P(choice | prompt) as a full continuation, or None
    when the backend could not measure it (recorded as missing, never as 0).
    """

    text: str
    token_logprob: float | None
    top_logprobs: dict[str, float]
    class_logprobs: dict[str, float | None]

    def to_record(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "index": 0,
            "finish_reason": "length",
            "logprobs": {
                "tokens": [self.text],
                "token_logprobs": [self.token_logprob],
                "top_logprobs": [self.top_logprobs],
                "text_offset": [0],
            },
            "class_logprobs": self.class_logprobs,
        }


class LM(Protocol):
    spec: ModelSpec

    def fingerprint(self) -> dict[str, Any]: ...

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[str]: ...

    def score_choices(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], top_k: int = 5
    ) -> list[ChoiceScore]: ...

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float]: ...


class Backend:
    """What every backend shares: the hook of the response cache wrapped around it (set by
    :class:`talltales.lm.cache.CachingLM`), to which it reports each item of a call as soon as it has it."""

    cache_hook = None

    def _emit(self, index: int, value: Any) -> None:
        if self.cache_hook is not None:
            self.cache_hook.partial(index, value)


def logsumexp(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isinf(v)]
    if not vals:
        return -math.inf
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the first occurrence of any stop string (as the OpenAI API does)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
