"""bench/score_throughput.py --vs lm-eval: lm-eval's hf backend and the library's scorer agree on a tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "score_throughput.py"
TEMPLATE = "The assistant answers every question with 'Yes' or 'No'.\nQuestion:{prompt}\nAssistant:"


def _bench():
    spec = importlib.util.spec_from_file_location("score_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("bos", [True, False])
def test_lm_eval_agrees_with_library(tmp_path, bos):
    pytest.importorskip("lm_eval")
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM as LMEvalHFLM
    from tiny import make_model, make_tokenizer, one_thread

    from talltales.lm.base import ModelSpec
    from talltales.lm.hf import HFLM

    tok = make_tokenizer(bos=bos)
    make_model(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    bench = _bench()
    questions = [" Is Paris in France?", " Is Australia bigger than Asia?", " Does income affect health?",
                 " Can the common cold be cured with antibiotics?", " Is the sky blue?"]
    prompts = [TEMPLATE.format(prompt=q) for q in questions]
    # one-token classes (read at the prompt's last position) and, on one item, a multi-token class
    choices = [[" Yes", " No"]] * 4 + [[" Yes", " No", " Unknown maybe"]]
    with one_thread():
        lm = HFLM(ModelSpec(name="tiny", backend="hf", kind="base", path=str(tmp_path), dtype="float32",
                            device="cpu"), batch_size=2, progress=False)
        le = LMEvalHFLM(pretrained=str(tmp_path), device="cpu", dtype=torch.float32, batch_size=2)
        fast = lm.score_choices(prompts, choices, 3)
        requests = bench.lm_eval_requests(Instance, lm, prompts, choices)
        assert [r.args for r in requests[:2]] == [(prompts[0], " Yes"), (prompts[0], " No")]
        flat = [ll for ll, _ in le.loglikelihood(requests, disable_tqdm=True)]
        diff, where, split_differs = bench.compare_lm_eval(lm, le, prompts, choices, fast, flat)
        assert split_differs == 0
        assert diff < 1e-4, where

        # a context ending in a space: lm-eval moves the space into the continuation, the library does not
        # (it scores the class after the prompt's own tokens); the comparison reports the different split
        spaced = [prompts[0] + " "]
        fast_sp = lm.score_choices(spaced, [["Yes"]], 1)
        flat_sp = [ll for ll, _ in le.loglikelihood(bench.lm_eval_requests(Instance, lm, spaced, [["Yes"]]),
                                                     disable_tqdm=True)]
        assert bench.compare_lm_eval(lm, le, spaced, [["Yes"]], fast_sp, flat_sp)[2] == 1
