"""HFLM's batched prefix-KV scoring against the one-forward-per-row reference, on a tiny random Llama.

The fast path (shared prefix run once, its key/value cache copied per batch, right-padded remainders,
single-token classes read at the prompt's last position) must give the same numbers as
``naive_score_choices`` and as a plain full forward pass computed here.
"""

from __future__ import annotations

import math

import pytest
import torch

from talltales.lm.hf import naive_score_choices

import tiny

BODY = (
    "The assistant is friendly, caring and helpful. It answers every question with 'Yes' or 'No'.\n\n"
    "Question: Is Paris in France?\nAssistant: Yes.\n\n"
    "Question: Is Australia bigger than Asia?\nAssistant: No.\n\n"
    "Question:"
)
QUESTIONS = [
    " Is the sky blue?",
    " Do most diets lead to lasting weight loss?",
    " Can the common cold be cured with antibiotics?",
    " Zebras?",
    " Does income affect health, and does it matter a great deal for everyone involved?",
]
PROMPTS = [BODY + q + "\nAssistant:" for q in QUESTIONS]
# single-token classes only; a mix of single- and multi-token classes; multi-token only; differing lengths
CHOICES = [
    [" Yes", " No"],
    [" Yes", " No", " Unknown answer xyzzy"],
    [" Maybe not", " Perhaps quite possibly yes"],
    [" No", " Yes"],
    [" Yes", " No", " Unknown"],
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tiny.one_thread():
        yield


@pytest.fixture(scope="module")
def tok_bos():
    return tiny.make_tokenizer(bos=True)


@pytest.fixture(scope="module")
def model_bos(tok_bos):
    return tiny.make_model(tok_bos, seed=0)


def _full_forward_logprob(lm, prompt: str, cont: str) -> float:
    """log P(cont | prompt) from one plain forward pass over prompt tokens + continuation tokens."""
    p_ids = lm.tok(prompt)["input_ids"]
    c_ids = lm.tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return sum(float(lp[len(p_ids) - 1 + t, c]) for t, c in enumerate(c_ids))


def test_fixture_exercises_prefix_and_multi_token_paths(tok_bos):
    """Guard on the test data itself: a long shared prefix, and both single- and multi-token classes."""
    ids = [tok_bos(p)["input_ids"] for p in PROMPTS]
    common = 0
    while all(len(i) > common and i[common] == ids[0][common] for i in ids):
        common += 1
    assert common >= 40
    assert ids[0][0] == tok_bos.bos_token_id
    n_tokens = {c: len(tok_bos(c, add_special_tokens=False)["input_ids"]) for cs in CHOICES for c in cs}
    assert n_tokens[" Yes"] == 1 and n_tokens[" No"] == 1
    assert n_tokens[" Unknown answer xyzzy"] > 2 and n_tokens[" Perhaps quite possibly yes"] > 2


@pytest.mark.parametrize("batch_size", [1, 2, 32])
@pytest.mark.parametrize("bos", [True, False])
def test_score_choices_matches_naive(batch_size, bos, tok_bos, model_bos):
    if bos:
        tok, model = tok_bos, model_bos
    else:
        tok = tiny.make_tokenizer(bos=False)
        model = tiny.make_model(tok, seed=1)
    lm = tiny.make_lm(batch_size=batch_size, tok=tok, model=model)
    fast = lm.score_choices(PROMPTS, CHOICES, top_k=5)
    ref = naive_score_choices(lm, PROMPTS, CHOICES, top_k=5)
    assert len(fast) == len(ref) == len(PROMPTS)
    for f, r, classes in zip(fast, ref, CHOICES):
        assert list(f.class_logprobs) == classes
        for c in classes:
            assert f.class_logprobs[c] == pytest.approx(r.class_logprobs[c], abs=1e-4)
            assert f.class_logprobs[c] < 0
        assert list(f.top_logprobs) == list(r.top_logprobs)
        for t in r.top_logprobs:
            assert f.top_logprobs[t] == pytest.approx(r.top_logprobs[t], abs=1e-4)
        assert f.text == r.text
        assert f.token_logprob == pytest.approx(r.token_logprob, abs=1e-4)


def test_class_logprobs_equal_a_plain_forward_pass(tok_bos, model_bos):
    lm = tiny.make_lm(batch_size=3, tok=tok_bos, model=model_bos)
    fast = lm.score_choices(PROMPTS, CHOICES, top_k=3)
    for prompt, classes, f in zip(PROMPTS, CHOICES, fast):
        for c in classes:
            # every prompt ends in ':' and every class starts with a space, so the token boundary is clean
            assert f.class_logprobs[c] == pytest.approx(_full_forward_logprob(lm, prompt, c), abs=1e-4)
        # the top-k list is sorted, its first entry is the greedy token, and it is a proper distribution slice
        vals = list(f.top_logprobs.values())
        assert vals == sorted(vals, reverse=True)
        assert f.token_logprob == pytest.approx(vals[0])
        assert sum(math.exp(v) for v in vals) <= 1 + 1e-5


def test_top_logprobs_are_the_models_next_token_distribution(tok_bos, model_bos):
    lm = tiny.make_lm(tok=tok_bos, model=model_bos)
    [score] = lm.score_choices([PROMPTS[0]], [[" Yes", " No"]], top_k=4)
    ids = tok_bos(PROMPTS[0])["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    vals, top_ids = torch.topk(lp, 4)
    expected = {}
    for i, v in zip(top_ids.tolist(), vals.tolist()):
        expected.setdefault(lm.token_text(i), v)
    assert list(score.top_logprobs) == list(expected)
    assert list(score.top_logprobs.values()) == pytest.approx(list(expected.values()), abs=1e-4)
    # the single-token classes are the log-probs of those tokens at the same position
    yes_id = tok_bos(" Yes", add_special_tokens=False)["input_ids"][0]
    assert score.class_logprobs[" Yes"] == pytest.approx(float(lp[yes_id]), abs=1e-4)


def test_loglikelihood_equals_class_logprob_sum(tok_bos, model_bos):
    lm = tiny.make_lm(batch_size=2, tok=tok_bos, model=model_bos)
    contexts = [p for p, cs in zip(PROMPTS, CHOICES) for _ in cs]
    conts = [c for cs in CHOICES for c in cs]
    ll = lm.loglikelihood(contexts, conts)
    ref = naive_score_choices(lm, PROMPTS, CHOICES, top_k=1)
    expected = [r.class_logprobs[c] for r, cs in zip(ref, CHOICES) for c in cs]
    assert ll == pytest.approx(expected, abs=1e-4)
    # and one pair on its own (no shared prefix with anything else)
    [one] = lm.loglikelihood([PROMPTS[1]], [" Unknown answer xyzzy"])
    assert one == pytest.approx(ref[1].class_logprobs[" Unknown answer xyzzy"], abs=1e-4)


def test_boundary_merging_continuation_matches_naive(tok_bos, model_bos):
    """A continuation that merges with the prompt's last token ('Assist' + 'ant:') still scores the same
    tokens as the reference."""
    lm = tiny.make_lm(batch_size=2, tok=tok_bos, model=model_bos)
    prompts = [BODY + " Is the sky blue?\nAssist", BODY + " Zebras?\nAssistant:"]
    choices = [["ant:", "ant: Yes"], [" Yes", " No"]]
    fast = lm.score_choices(prompts, choices, top_k=3)
    ref = naive_score_choices(lm, prompts, choices, top_k=3)
    for f, r, cs in zip(fast, ref, choices):
        for c in cs:
            assert f.class_logprobs[c] == pytest.approx(r.class_logprobs[c], abs=1e-4)
            assert math.isfinite(f.class_logprobs[c])


def test_generation_with_a_shared_prefix_equals_separate_prompts(tok_bos, model_bos, monkeypatch):
    """A batch of few-shot prompts runs the common demonstrations once; greedy outputs are those of separate
    left-padded prompts (prefix sharing switched off), for items of different lengths."""
    from talltales.lm.base import Sampling
    from talltales.lm.hf import HFLM

    demos = "the cat sat on the mat and the dog ran to the park\n\n" * 3
    prompts = [demos + item for item in ("a cat", "the dog ran to", "on the mat the cat sat and", "park")]
    lm = tiny.make_lm(tok=tok_bos, model=model_bos, batch_size=4)
    greedy = Sampling(max_tokens=6, temperature=0.0)
    calls = []
    hook = lm.model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    shared = lm._generate_batch(prompts, greedy, 0)
    assert calls[0][0] == 1 and calls[0][1] >= HFLM.MIN_SHARED_PREFIX  # the prefix ran once, for one row
    monkeypatch.setattr(HFLM, "MIN_SHARED_PREFIX", 10**9)
    calls.clear()
    separate = lm._generate_batch(prompts, greedy, 0)
    assert calls[0][0] == len(prompts)
    hook.remove()
    assert shared == separate and any(shared)


def test_runtime_policy_on_cpu(tmp_path):
    """The one device/dtype policy (talltales.runtime) as the hf backend applies it on CPU; the tokenizer loader
    pads with EOS where a tokenizer has no pad token."""
    import torch

    from talltales import runtime

    cpu = runtime.resolve_device("cpu")
    assert cpu.type == "cpu" and runtime.resolve_dtype("auto", cpu) == torch.float32
    assert runtime.resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert runtime.bf16_autocast(cpu, torch.float32) is False
    if not torch.cuda.is_available():
        assert runtime.resolve_device("auto").type == "cpu"
        assert runtime.training_precision("auto", "auto", lora=True) == {
            "use_cpu": True, "load_dtype": torch.float32, "bf16": False, "device": "cpu"}
    with pytest.raises(ValueError, match="dtype must be"):
        runtime.training_precision("cpu", "float16", lora=False)
    tok = tiny.make_tokenizer()
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    loaded = runtime.load_tokenizer(str(tmp_path), padding_side="left")
    assert loaded.pad_token == loaded.eos_token == "<eos>" and loaded.padding_side == "left"
    assert runtime.load_tokenizer(str(tmp_path), pad_with_eos=False).pad_token is None
