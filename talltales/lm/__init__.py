"""Language-model backends behind one interface (see :mod:`talltales.lm.base`), each behind the one response
cache (:class:`talltales.lm.cache.CachingLM`)."""

from __future__ import annotations

from .base import LM, ChoiceScore, ModelSpec, Sampling, spec_from_entry
from .cache import CachingLM, ResponseCache

BACKENDS = ("hf", "openai")


def load_lm(spec: ModelSpec, cache: ResponseCache | None = None, **kwargs) -> CachingLM:
    """The backend named by ``spec.backend``, behind ``cache`` (None: no persistent cache)."""
    if spec.backend == "hf":
        from .hf import HFLM

        backend = HFLM(spec, **kwargs)
    elif spec.backend == "openai":
        from .openai import OpenAILM

        backend = OpenAILM(spec, **kwargs)
    else:
        raise ValueError(f"model {spec.name!r}: unknown backend {spec.backend!r} (expected one of {', '.join(BACKENDS)})")
    return CachingLM(backend, cache)


def lm_from_entry(entry: dict, cache: str | None = None, batch_size: int | None = None) -> CachingLM:
    """The backend for a registry entry (as stages receive it in params), with the response cache at ``cache``;
    ``batch_size`` applies to the hf backend."""
    spec = spec_from_entry(entry)
    kwargs = {"batch_size": batch_size} if (batch_size and spec.backend == "hf") else {}
    return load_lm(spec, cache=ResponseCache(cache), **kwargs)


__all__ = ["BACKENDS", "LM", "CachingLM", "ChoiceScore", "ModelSpec", "Sampling", "ResponseCache", "load_lm",
           "lm_from_entry"]
