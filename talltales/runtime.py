"""Where and in what precision torch runs, and how a tokenizer is loaded: one policy for every stage.

* :func:`resolve_device` / :func:`resolve_dtype`: inference (the hf backend, judges): ``auto`` is CUDA when
  present, else CPU; weights ``auto`` are bf16 on CUDA (fp16 where bf16 is unsupported) and fp32 on CPU.
* :func:`bf16_autocast`: whether fp32 weights on this device run under bf16 autocast (CUDA with bf16 only).
* :func:`training_precision`: device and precision of a training run (fp32 on CPU; on CUDA fp32 weights with
  bf16 autocast, bf16 weights for a frozen LoRA base or when asked).
* :func:`load_tokenizer`: ``AutoTokenizer.from_pretrained`` with EOS as the pad token where there is none.

torch and transformers are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any


def resolve_device(device: str):
    """``auto`` -> CUDA when available, else CPU; anything else as torch names it (``cpu``, ``cuda:1``)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device):
    """``auto`` -> bf16 on CUDA (fp16 where bf16 is unsupported), fp32 elsewhere; else the torch dtype named."""
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def bf16_autocast(device, weights) -> bool:
    """True when ``weights`` (a torch dtype) are fp32 on a CUDA device that supports bf16: run them under bf16
    autocast."""
    import torch

    return device.type == "cuda" and weights == torch.float32 and torch.cuda.is_bf16_supported()


def training_precision(device: str, dtype: str, lora: bool) -> dict[str, Any]:
    """Device and precision of a training run: ``device`` auto | cuda | cpu, ``dtype`` auto | float32 | bfloat16.

    Returns ``{"use_cpu", "load_dtype", "bf16", "device"}``: fp32 on CPU; on CUDA fp32 weights with bf16
    autocast (``bf16``), bf16 weights (``load_dtype``) for a frozen LoRA base (``lora``) or when dtype is
    bfloat16; dtype float32 turns autocast off.
    """
    import torch

    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA device is available")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if dtype == "auto":
        load = torch.bfloat16 if (cuda and lora) else torch.float32
    elif dtype in ("float32", "bfloat16"):
        load = getattr(torch, dtype)
    else:
        raise ValueError(f"dtype must be auto, float32 or bfloat16, not {dtype!r}")
    return {"use_cpu": not cuda, "load_dtype": load, "bf16": bool(cuda and (dtype != "float32")),
            "device": "cuda" if cuda else "cpu"}


def load_tokenizer(location: str, revision: str | None = None, padding_side: str | None = None,
                   truncation_side: str | None = None, pad_with_eos: bool = True):
    """The tokenizer at ``location`` (hub id or folder). Without a pad token it pads with EOS (no new embedding
    row: pads are masked by the attention mask) unless ``pad_with_eos`` is False."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(location, revision=revision)
    if pad_with_eos and tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if padding_side:
        tok.padding_side = padding_side
    if truncation_side:
        tok.truncation_side = truncation_side
    return tok


__all__ = ["bf16_autocast", "load_tokenizer", "resolve_device", "resolve_dtype", "training_precision"]
