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


__all__ = ["LM", "ChoiceScore", "ModelSpec", "Sampling", "ResponseCache", "load_lm"]
