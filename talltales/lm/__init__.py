"""Language-model backends behind one interface (see :mod:`talltales.lm.base`)."""

from __future__ import annotations

from .base import LM, ChoiceScore, ModelSpec, Sampling
from .cache import ResponseCache


def load_lm(spec: ModelSpec, cache: ResponseCache | None = None, **kwargs) -> LM:
    """Build the backend named by ``spec.backend``."""
    if spec.backend == "hf":
        from .hf import HFLM

        return HFLM(spec, cache=cache, **kwargs)
    if spec.backend == "openai":
        from .openai import OpenAILM

        return OpenAILM(spec, cache=cache, **kwargs)
    raise ValueError(f"model {spec.name!r}: unknown backend {spec.backend!r} (expected 'hf' or 'openai')")


def lm_from_entry(entry: dict, cache: str | None = None, batch_size: int | None = None) -> LM:
    """The backend for a registry entry (as stages receive it in params), with the response cache at ``cache``;
    ``batch_size`` applies to the hf backend."""
    from ..config import spec_from_entry

    spec = spec_from_entry(entry)
    kwargs = {"batch_size": batch_size} if (batch_size and spec.backend == "hf") else {}
    return load_lm(spec, cache=ResponseCache(cache), **kwargs)


__all__ = ["LM", "ChoiceScore", "ModelSpec", "Sampling", "ResponseCache", "load_lm", "lm_from_entry"]
