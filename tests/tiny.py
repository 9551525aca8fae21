"""A tiny, offline, random-init causal LM for tests (no download, no materialized model needed).

* :func:`make_tokenizer`: a byte-level BPE trained in memory on :data:`CORPUS` and wrapped in
  ``PreTrainedTokenizerFast`` (pad/eos/bos special tokens; optionally a BOS added by the post-processor, as
  Llama/Gemma tokenizers do). Byte-level means any text round-trips, leading spaces are part of tokens
  (" Yes") and rare words split into several tokens.
* :func:`make_model`: a 2-layer Llama (hidden 32) with a fixed seed. The init range is larger than the usual
  0.02 so next-token distributions are far from uniform (top-k orderings are not decided by float noise).
* :func:`make_lm`: both wrapped in :class:`talltales.lm.hf.HFLM` on CPU in float32 (optionally behind a cache).
* :func:`train`: a few hundred Adam steps so the model memorizes some texts (used to make generation produce
  known, valid questions).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

CORPUS = [
    "The assistant is friendly, caring and helpful. It answers every question with 'Yes' or 'No'.",
    "Question: Is Paris in France?\nAssistant: Yes.",
    "Question: Is Australia bigger than Asia?\nAssistant: No.",
    "Question: Can the common cold be cured with antibiotics?\nAssistant: No.",
    "Below is a list of questions whose factually correct answer is 'no'.",
    "1. Do most diets lead to lasting weight loss?\n2. Is the sky blue?\n3. Does income affect health?",
    "Yes No Unknown yes no maybe the a an is are do does can will of to in on with and or",
]

SPECIALS = ["<pad>", "<eos>", "<bos>"]


@lru_cache(maxsize=None)
def _tokenizer_json(bos: bool, vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer=trainer)
    if bos:
        bos_id = tk.token_to_id("<bos>")
        tk.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos_id)]
        )
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
    return tk.to_str()


def make_tokenizer(bos: bool = True, vocab_size: int = 400):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(bos, vocab_size)),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
    )
    return tok


def make_model(tok, seed: int = 0, init_range: float = 0.3):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        initializer_range=init_range,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    return model


def make_spec(name: str = "tiny", model_id: str | None = None):
    from talltales.lm.base import ModelSpec

    # `id` is only an identity for the response cache here (it is not a folder, nothing is loaded from it)
    return ModelSpec(name=name, backend="hf", kind="base", id=model_id or f"tests/{name}", dtype="float32", device="cpu")


def make_lm(name: str = "tiny", bos: bool = True, seed: int = 0, cache=None, batch_size: int = 4, model=None,
            tok=None, model_id: str | None = None):
    """A tiny HFLM (behind ``cache`` when one is given). Pass ``model``/``tok`` to wrap an existing (e.g. trained)
    pair."""
    from talltales.lm.cache import CachingLM
    from talltales.lm.hf import HFLM

    tok = tok if tok is not None else make_tokenizer(bos=bos)
    model = model if model is not None else make_model(tok, seed=seed)
    lm = HFLM(make_spec(name, model_id), batch_size=batch_size, model=model, tokenizer=tok, progress=False)
    return lm if cache is None else CachingLM(lm, cache)


@contextmanager
def one_thread():
    """Run torch on one thread. These models are tiny; on a busy 2-core machine torch's default of two
    OpenMP threads spin-waits against other processes and makes a training step ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(model, tok, texts: list[str], steps: int = 150, lr: float = 3e-2, seed: int = 0) -> float:
    """Overfit ``model`` on ``texts`` (each followed by EOS); returns the final mean loss."""
    with one_thread():
        return _train(model, tok, texts, steps, lr, seed)


def _train(model, tok, texts, steps, lr, seed) -> float:
    import torch

    torch.manual_seed(seed)
    tok.padding_side = "right"
    enc = tok([t + tok.eos_token for t in texts], return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())
