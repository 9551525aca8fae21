"""The GPU path, run where CUDA is available and skipped elsewhere (marker ``gpu``): policy training on CUDA with
bf16 autocast, ``accelerate launch`` with the DeepSpeed configs of envs/accelerate (ZeRO-2 and ZeRO-3 with CPU
offload), the judge and the HF backend on CUDA, and the study-2 DAG with GPU resources through those launchers.

Models are tiny random-init ones built here (the materialized registry models are not needed). CI has no GPU: these
tests are run by hand on a GPU machine (see README, "GPU path").
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO, make_config, snakemake, write_config
from test_judge import bert_backbone, toy_data
from test_train import DEMOS, EVAL_PROMPTS, PROMPTS, RL_CFG, _changed, _weights, space_reward
from tiny import make_lm, make_model, make_tokenizer

from talltales.deception import launch as L, rl as R, settings as C, sft as S
from talltales.deception.judge import Judge, JudgeConfig
from talltales.deception.judge_training import train_judge

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="needs the deepspeed package (pip install '.[gpu]')")


def _report(out: Path) -> dict:
    return json.loads((out / "train_report.json").read_text())


def test_sft_on_cuda_with_bf16_autocast(tiny_dir, tmp_path):
    out = tmp_path / "sft"
    report = S.sft(tiny_dir, DEMOS, C.SFTRunConfig(epochs=3, lr=1e-2, batch_size=4, eval_every=3), str(out))
    assert report["device"] == "cuda" and report["bf16"] is True and report["world_size"] == 1
    assert report["loss_end"] < report["loss_start"] - 1.0
    assert _changed(_weights(tiny_dir), _weights(str(out)))
    # saved as fp32 weights (bf16 is autocast only), loadable on CPU
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.float32


def test_rloo_on_cuda(tiny_dir, tmp_path):
    out = tmp_path / "rl"
    report = R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward,
                  C.RLRunConfig(steps=30, eval_every=10, checkpoint_every=10, **RL_CFG), str(out))
    assert report["device"] == "cuda" and report["bf16"] is True
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    train = [r["reward"] for r in rows if r.get("reward") is not None]
    assert len(train) == 30
    assert sum(train[-5:]) / 5 > sum(train[:5]) / 5  # the sampled reward rises (GPU sampling is not bit-exact)
    assert _changed(_weights(tiny_dir), _weights(str(out / "best")))


def _launch(mode: str, spec: dict, config: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / f"{mode}.json").write_text(json.dumps(spec))
    cmd = L.accelerate_command([mode, "--args-json", str(tmp_path / f"{mode}.json")], 1,
                               str(REPO / "envs" / "accelerate" / config), always=True)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)


@needs_deepspeed
@pytest.mark.parametrize("config", ["zero2.yaml", "zero3_offload.yaml"])
def test_accelerate_launch_with_deepspeed_trains_sft_and_rl(tiny_dir, tmp_path, config):
    DEMOS.to_csv(tmp_path / "demos.csv", index=False)
    spec = {"policy_path": tiny_dir, "data": str(tmp_path / "demos.csv"), "out_dir": str(tmp_path / "sft"),
            "config": {"epochs": 3, "lr": 1e-2, "batch_size": 4, "eval_every": 3, "checkpoint_every": 3}}
    proc = _launch("sft", spec, config, tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = _report(tmp_path / "sft")
    assert report["distributed_type"] == "DEEPSPEED" and report["device"] == "cuda" and report["bf16"] is True
    assert report["loss_end"] < report["loss_start"] - 1.0
    assert _changed(_weights(tiny_dir), _weights(str(tmp_path / "sft")))  # a plain HF folder, not a DS checkpoint

    # RL with the judge stand-in of a real (tiny, trained-for-nothing) classifier folder is covered by the DAG test;
    # here the reward is P(True) of a random tiny judge, enough to exercise generation + RLOO under DeepSpeed.
    judge = bert_backbone(tmp_path / "judge_backbone")
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig.from_pretrained(judge, num_labels=2)).save_pretrained(tmp_path / "judge")
    make_tokenizer(bos=True).save_pretrained(tmp_path / "judge")
    PROMPTS.to_csv(tmp_path / "prompts.csv", index=False)
    EVAL_PROMPTS.to_csv(tmp_path / "eval.csv", index=False)
    spec = {"policy_path": tiny_dir, "prompts": str(tmp_path / "prompts.csv"), "eval_prompts": str(tmp_path / "eval.csv"),
            "judge_path": str(tmp_path / "judge"), "out_dir": str(tmp_path / "rl"),
            "config": {"steps": 4, "batch_size": 4, "num_generations": 4, "max_new_tokens": 4, "eval_every": 2,
                       "checkpoint_every": 2, "lr": 1e-3}}
    proc = _launch("rl", spec, config, tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = _report(tmp_path / "rl")
    assert report["distributed_type"] == "DEEPSPEED" and report["steps"] == 4 and report["device"] == "cuda"
    assert _changed(_weights(tiny_dir), _weights(str(tmp_path / "rl" / "best")))


def test_judge_trains_and_scores_on_cuda(tmp_path):
    backbone = bert_backbone(tmp_path / "bert")
    cfg = JudgeConfig(epochs=6, lr=2e-3, batch_size=16, warmup_steps=10, max_length=64, seed=0)
    report = train_judge(backbone, toy_data(480, 0), toy_data(100, 2), "clean", cfg, tmp_path / "judge",
                         progress=False)
    assert report["device"].startswith("cuda") and report["bf16_autocast"] is True
    assert report["val"]["all"]["acc_truth"] > 0.9, report["val"]
    judge = Judge.load(str(tmp_path / "judge"), device="auto")
    val = toy_data(100, 2)
    from talltales.deception import formats

    p = judge.p_true([formats.judge_input(c, q, a) for c, q, a in zip(val.context, val.question, val.answer)])
    assert ((p > 0.5).astype(int) == val.label.to_numpy()).mean() > 0.9


def test_hf_backend_on_cuda_scores_like_cpu():
    from talltales.lm.base import ModelSpec
    from talltales.lm.hf import HFLM

    tok = make_tokenizer()
    cpu = make_lm(tok=tok, model=make_model(tok, seed=3))
    spec = ModelSpec(name="tiny", backend="hf", kind="base", id="tests/tiny", dtype="float32", device="cuda")
    gpu = HFLM(spec, batch_size=4, model=make_model(tok, seed=3), tokenizer=tok, progress=False)
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    prompts = ["the cat sat on the", "a b c d e f", "yes or no"]
    choices = [(" yes", " no")] * len(prompts)
    for x, y in zip(cpu.score_choices(prompts, choices), gpu.score_choices(prompts, choices)):
        assert x.class_logprobs == pytest.approx(y.class_logprobs, abs=2e-3)
    assert cpu.loglikelihood(prompts, [" yes"] * 3) == pytest.approx(gpu.loglikelihood(prompts, [" yes"] * 3), abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["auto", pytest.param("accelerate", marks=needs_deepspeed)])
def test_study2_dag_on_the_gpu(tmp_path, launch):
    """The test config's study-2 DAG with one GPU per training stage, on tiny registry models given by path."""
    models = tmp_path / "models"
    tok = make_tokenizer()
    make_model(tok).save_pretrained(models / "policy")
    tok.save_pretrained(models / "policy")
    bert_backbone(models / "judge")
    one_gpu = {"gpus": 1, "cpus_per_gpu": 4, "mem_mb": 8000, "runtime": 30}
    cfg = make_config(tmp_path, studies=("deception",), deception={
        "policies": ["tiny-policy"],
        "judge": {"backbone": "tiny-judge"},
        "resources": {stage: one_gpu for stage in ("judge", "warmup", "sft", "rl")},
        "launch": launch,
        "accelerate_config": str(REPO / "envs" / "accelerate" / "zero2.yaml"),
    })
    cfg["models"].update({
        "tiny-policy": {"backend": "hf", "path": str(models / "policy"), "params": 30000, "kind": "base"},
        "tiny-judge": {"backend": "hf", "path": str(models / "judge"), "params": 30000, "kind": "encoder"},
    })
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "all", "--resources", "gpu=1")
    reports = sorted((tmp_path / "results" / "deception" / "policies").glob("*/*/**/train_report.json"))
    reports = [p for p in reports if p.parent.name != "best"]
    assert {p.relative_to(tmp_path / "results" / "deception" / "policies").parts[0] for p in reports} == \
        {"warmup", "sft", "rl"}
    for path in reports:
        r = json.loads(path.read_text())
        assert r["device"] == "cuda" and r["bf16"] is True, path
        assert r["distributed_type"] == ("DEEPSPEED" if launch == "accelerate" else "NO"), (path, r["distributed_type"])
    judge = json.loads((tmp_path / "results" / "deception" / "judges" / "clean" / "report.json").read_text())
    assert "cuda" in json.dumps(judge)
    table = pd.read_csv(tmp_path / "results" / "deception" / "tables" / "results.csv")
    assert set(table.technique) >= {"SFT", "RL"}
