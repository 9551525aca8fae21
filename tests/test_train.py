"""Policy training (talltales.deception: settings, sft, rl, runs, launch) on a tiny offline random-init Llama: label masking, SFT, resumption,
RL (RLOO and GRPO), the held-out best checkpoint, the JSON entry point and the launch command."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from talltales.deception import formats
from talltales.deception import launch as L, rl as R, runs, settings as C, sft as S
from tiny import make_model, make_tokenizer, one_thread

REPO_ROOT = Path(__file__).resolve().parents[1]

DEMOS = pd.DataFrame({
    "context": ["Paris is in France.", "The sky is blue today and the sun is out.", "Asia is big.", "Cats are animals."] * 3,
    "question": ["Is Paris in France?", "Is the sky blue?", "Is Asia bigger than Australia?", "Are cats animals?"] * 3,
    "answer": ["Yes", "Yes, it is blue.", "Yes", "No"] * 3,
})
PROMPTS = DEMOS[["context", "question"]].iloc[:8].reset_index(drop=True)
EVAL_PROMPTS = pd.DataFrame({
    "context": ["Dogs bark.", "Water is wet.", "Fish swim.", "Snow is cold.", "Birds fly.", "Fire is hot."],
    "question": ["Do dogs bark?", "Is water wet?", "Do fish swim?", "Is snow cold?", "Can birds fly?", "Is fire hot?"],
})


def space_reward(contexts, questions, completions):
    """1 when the completion starts with a space (~1/3 of the tiny model's samples at the start)."""
    assert len(contexts) == len(questions) == len(completions)
    return [1.0 if c.startswith(" ") else 0.0 for c in completions]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _weights(path):
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def _changed(a, b) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


# ------------------------------------------------------------------------------------------------ labels and masking


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_labels_mask_prompt_and_pad(padding_side, pad_is_eos):
    tok = make_tokenizer()
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    rows = DEMOS.iloc[:4]
    enc = S.encode_rows(tok, rows, max_length=256)
    batch = S.DemoCollator(tok.pad_token_id, padding_side)(enc)
    ids, mask, labels, pos = batch["input_ids"], batch["attention_mask"], batch["labels"], batch["position_ids"]
    assert len({len(e["input_ids"]) for e in enc}) > 1  # the batch really is padded
    for i, r in enumerate(rows.itertuples()):
        prompt_ids = tok(formats.qa_prompt(r.context, r.question))["input_ids"]
        answer_ids = tok(" " + r.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        real = mask[i].bool()
        n_pad = int((~real).sum())
        # pads sit on the requested side
        pad_pos = list(range(n_pad)) if padding_side == "left" else list(range(len(real) - n_pad, len(real)))
        assert not real[pad_pos].any()
        assert (ids[i][~real] == tok.pad_token_id).all()
        seq, lab = ids[i][real].tolist(), labels[i][real].tolist()
        assert seq == prompt_ids + answer_ids  # the demo text is exactly prompt + " " + answer + EOS
        # every masked position is a pad or a prompt token; every trained position an answer token or the EOS
        assert (labels[i][~real] == S.IGNORE_INDEX).all()
        assert lab[: len(prompt_ids)] == [S.IGNORE_INDEX] * len(prompt_ids)
        assert lab[len(prompt_ids):] == answer_ids
        assert enc[i]["n_prompt"] == len(prompt_ids)
        # positions count real tokens only, whatever the padding side
        assert pos[i][real].tolist() == list(range(len(seq)))
    # the final EOS is trained on even when EOS is also the pad token
    assert (labels == tok.eos_token_id).sum() == len(rows)


def test_left_and_right_padding_give_the_same_loss():
    tok = make_tokenizer()
    model = make_model(tok)
    enc = S.encode_rows(tok, DEMOS.iloc[:4], max_length=256)
    with torch.no_grad():
        left = model(**S.DemoCollator(tok.pad_token_id, "left")(enc)).loss
        right = model(**S.DemoCollator(tok.pad_token_id, "right")(enc)).loss
    assert torch.isfinite(left) and abs(float(left) - float(right)) < 1e-4


def test_answer_loss_keeps_few_logits_and_equals_the_full_loss(monkeypatch):
    tok = make_tokenizer()
    model = make_model(tok)
    enc = S.encode_rows(tok, DEMOS.iloc[:4], max_length=256)
    batch = S.DemoCollator(tok.pad_token_id, "left")(enc)
    kept = []
    forward = model.forward

    def spy(*args, **kwargs):
        kept.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    with torch.no_grad():
        fast = S.answer_loss(model, batch)
        full = forward(**batch).loss
    longest_answer = max(len(e["input_ids"]) - e["n_prompt"] for e in enc)
    assert kept == [longest_answer + 1] and kept[0] < batch["input_ids"].shape[1] // 2
    assert abs(float(fast) - float(full)) < 1e-5

def test_too_long_demos_lose_prompt_tokens_not_the_answer():
    tok = make_tokenizer()
    full = S.encode_demo(tok, "A long context " * 10, "Is it long?", "Yes, very long.", max_length=10_000)
    short = S.encode_demo(tok, "A long context " * 10, "Is it long?", "Yes, very long.", max_length=20)
    assert not full["truncated"] and short["truncated"] and len(short["input_ids"]) == 20
    n_answer = len(full["input_ids"]) - full["n_prompt"]
    assert short["input_ids"][0] == tok.bos_token_id  # the BOS stays
    assert short["input_ids"][-n_answer:] == full["input_ids"][-n_answer:]  # answer + EOS intact
    assert len(short["input_ids"]) - short["n_prompt"] == n_answer
    assert tok.decode(short["input_ids"][: short["n_prompt"]]).endswith("?\nAnswer:")  # the cue stays


# ------------------------------------------------------------------------------------------------ SFT

SFT_CFG = dict(epochs=3, lr=1e-2, batch_size=4, checkpoint_every=2, eval_every=3)


@pytest.fixture(scope="module")
def sft_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "model"
    report = S.sft(tiny_dir, DEMOS, C.SFTRunConfig(**SFT_CFG), str(out), val_rows=DEMOS.iloc[:2])
    return out, report


def test_sft_updates_weights_and_lowers_the_loss(tiny_dir, sft_run):
    out, report = sft_run
    assert report["loss_end"] < report["loss_start"] - 1.0  # mean loss on the demos, before vs after
    assert report["val_loss_end"] < report["val_loss_start"]
    assert report["steps"] == 9 and report["n_rows"] == len(DEMOS) and report["resumed_from_step"] is None
    assert _changed(_weights(tiny_dir), _weights(str(out)))
    assert not (out.parent / "model.partial").exists()
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["loss_end"] == report["loss_end"] and saved["config"]["lr"] == 1e-2 and saved["seconds"] > 0
    rows = _rows(out / "metrics.jsonl")
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, 10)) and all("lr" in r for r in rows if "loss" in r)
    assert [r["step"] for r in rows if "eval_val_loss" in r] == [0, 3, 6, 9]
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).eos_token == "<eos>"


def test_sft_resumes_from_its_last_checkpoint(tiny_dir, sft_run, tmp_path, caplog):
    out = tmp_path / "model"
    cfg = C.SFTRunConfig(**SFT_CFG)
    with pytest.raises(KeyboardInterrupt):
        S.sft(tiny_dir, DEMOS, cfg, str(out), val_rows=DEMOS.iloc[:2], stop_after_steps=5)
    partial = tmp_path / "model.partial"
    assert not out.exists() and (partial / "checkpoint-4" / "trainer_state.json").exists()
    assert max(r["step"] for r in _rows(partial / "metrics.jsonl")) == 5  # step 5 ran, was not checkpointed
    with caplog.at_level(logging.INFO, logger="talltales.deception"):
        report = S.sft(tiny_dir, DEMOS, cfg, str(out), val_rows=DEMOS.iloc[:2])
    assert "resuming from step 4" in caplog.text
    assert report["resumed_from_step"] == 4 and report["steps"] == 9
    rows = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 10))  # continued, step 5 not duplicated
    assert (out / runs.BODY_FILE).exists() and (out / runs.EMBEDDINGS_FILE).exists() and not partial.exists()
    # the resumed run is the uninterrupted one: same data order, RNG, optimizer and scheduler state
    ref_out, ref = sft_run
    assert report["loss_end"] == pytest.approx(ref["loss_end"], abs=1e-6)
    ref_rows = _rows(ref_out / "metrics.jsonl")
    assert [r.get("loss") for r in rows if "loss" in r] == pytest.approx(
        [r.get("loss") for r in ref_rows if "loss" in r], abs=1e-6)


def test_sft_does_not_resume_a_run_with_another_config(tiny_dir, tmp_path, caplog):
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        S.sft(tiny_dir, DEMOS, C.SFTRunConfig(**SFT_CFG), str(out), stop_after_steps=2)
    assert (tmp_path / "model.partial" / "checkpoint-2").exists()
    with caplog.at_level(logging.INFO, logger="talltales.deception"):
        report = S.sft(tiny_dir, DEMOS, C.SFTRunConfig(**{**SFT_CFG, "lr": 5e-3}), str(out))
    assert "resuming" not in caplog.text and "starting afresh" in caplog.text
    assert report["resumed_from_step"] is None and report["steps"] == 9
    assert [r["step"] for r in _rows(out / "metrics.jsonl") if "loss" in r] == list(range(1, 10))


# ------------------------------------------------------------------------------------------------ RL


def _greedy_reward(model_dir, prompts) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    texts = [formats.qa_prompt(c, q) for c, q in zip(prompts.context, prompts.question)]
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=4, pad_token_id=tok.pad_token_id)
    comps = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        comps.append(tok.decode(row[:cut], skip_special_tokens=True))
    r = space_reward(list(prompts.context), list(prompts.question), comps)
    return sum(r) / len(r)


RL_CFG = dict(lr=3e-3, batch_size=4, num_generations=4, max_new_tokens=4, eval_batch_size=8)


ENGINES = ["talltales", "trl"]


@pytest.mark.parametrize("engine", ENGINES)
def test_rloo_moves_the_policy_toward_the_reward(tiny_dir, tmp_path, engine):
    out = tmp_path / "rl"
    keep_last = engine == "talltales"  # one engine keeps last/, the other shows the default (only best/)
    cfg = C.RLRunConfig(engine=engine, steps=30, eval_every=5, checkpoint_every=10, keep_last=keep_last, **RL_CFG)
    report = R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward, cfg, str(out))
    assert report["algorithm"] == "rloo" and report["engine"] == engine and report["steps"] == 30
    rows = _rows(out / "metrics.jsonl")
    train = [r for r in rows if r.get("reward") is not None]
    assert [r["step"] for r in train] == list(range(1, 31))
    assert all("kl" in r for r in train)
    if engine == "trl":
        assert all("rewards/judge/mean" in r for r in train)  # trl's metrics, our reward's name
    first, last = (sum(r["reward"] for r in rs) / len(rs) for rs in (train[:5], train[-5:]))
    assert last > first + 0.3, (first, last)  # sampled reward ~0.2 -> ~0.9 (deterministic on CPU with seed 62)
    held = [r for r in rows if "heldout_reward" in r]
    assert [r["step"] for r in held] == [0, 5, 10, 15, 20, 25, 30]
    candidates = [r for r in held if r["step"] > 0]
    best = max(candidates, key=lambda r: r["heldout_reward"])
    assert report["rl_reward_best"] == best["heldout_reward"] > report["rl_reward_start"]
    assert report["rl_reward_best_lo"] <= report["rl_reward_best"] <= report["rl_reward_best_hi"]
    per_prompt = {r["step"]: r["rewards"] for r in _rows(out / "heldout.jsonl")}  # each evaluation, per prompt
    assert sorted(per_prompt) == [0, 5, 10, 15, 20, 25, 30] and len(per_prompt[0]) == len(EVAL_PROMPTS)
    assert sum(per_prompt[report["best_step"]]) / len(EVAL_PROMPTS) == pytest.approx(report["rl_reward_best"])
    assert report["best_step"] == min(r["step"] for r in candidates if r["heldout_reward"] == best["heldout_reward"])
    # the kept best policy is the evaluated one: re-evaluating it gives the same greedy reward
    assert _greedy_reward(str(out / "best"), EVAL_PROMPTS) == pytest.approx(report["rl_reward_best"])
    if keep_last:
        assert _changed(_weights(tiny_dir), _weights(str(out / "last")))
    assert _changed(_weights(tiny_dir), _weights(str(out / "best")))
    assert json.loads((out / "train_report.json").read_text())["best_step"] == report["best_step"]
    assert sorted(p.name for p in out.iterdir()) == ["best", "heldout.jsonl"] + ["last"] * keep_last + [
        "metrics.jsonl", "train_report.json"]


@pytest.mark.parametrize("engine", ENGINES)
def test_rl_resume_keeps_a_consistent_best(tiny_dir, tmp_path, caplog, engine):
    out = tmp_path / "rl"
    cfg = C.RLRunConfig(engine=engine, steps=10, eval_every=2, checkpoint_every=4, **RL_CFG)
    with pytest.raises(KeyboardInterrupt):
        R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward, cfg, str(out), stop_after_steps=7)
    partial = tmp_path / "rl.partial"
    assert (partial / "checkpoint-4").exists() and not (partial / "checkpoint-8").exists()
    assert json.loads((partial / "best" / "best.json").read_text())["step"] <= 4  # only checkpointed bests
    with caplog.at_level(logging.INFO, logger="talltales.deception"):
        report = R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward, cfg, str(out))
    assert "resuming from step 4" in caplog.text and report["resumed_from_step"] == 4
    rows = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "heldout_reward" in r] == [0, 2, 4, 6, 8, 10]
    assert [r["step"] for r in rows if r.get("reward") is not None] == list(range(1, 11))
    assert [r["step"] for r in _rows(out / "heldout.jsonl")] == [0, 2, 4, 6, 8, 10]
    assert _greedy_reward(str(out / "best"), EVAL_PROMPTS) == pytest.approx(report["rl_reward_best"])
    assert not partial.exists()


def test_grpo_runs(tiny_dir, tmp_path):
    out = tmp_path / "grpo"
    cfg = C.RLRunConfig(engine="trl", algorithm="grpo", steps=2, eval_every=1, checkpoint_every=10, **RL_CFG)
    report = R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward, cfg, str(out))
    assert report["algorithm"] == "grpo" and report["steps"] == 2 and report["best_step"] in (1, 2)
    assert [r["step"] for r in _rows(out / "metrics.jsonl") if r.get("reward") is not None] == [1, 2]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "best")


# ------------------------------------------------------------------------------------------------ entry point, launch


def test_main_runs_sft_and_rl_from_json(tiny_dir, tmp_path, monkeypatch):
    DEMOS.iloc[:4].to_csv(tmp_path / "demos.csv", index=False)
    spec = {"policy_path": tiny_dir, "data": str(tmp_path / "demos.csv"), "out_dir": str(tmp_path / "sft"),
            "config": {"epochs": 1, "lr": 1e-3, "batch_size": 2}}
    (tmp_path / "sft.json").write_text(json.dumps(spec))
    assert L.main(["sft", "--args-json", str(tmp_path / "sft.json")]) == 0
    assert json.loads((tmp_path / "sft" / "train_report.json").read_text())["steps"] == 2

    class FakeJudge:  # stands in for talltales.deception.judge.Judge
        seen: list[str] = []

        @classmethod
        def load(cls, path, device="auto", batch_size=32):
            assert path == "judge-dir" and batch_size == 32
            return cls()

        def p_true(self, texts):
            FakeJudge.seen.extend(texts)
            return torch.tensor([0.25] * len(texts)).numpy()

    monkeypatch.setitem(sys.modules, "talltales.deception.judge", types.SimpleNamespace(Judge=FakeJudge))
    PROMPTS.to_csv(tmp_path / "prompts.csv", index=False)
    EVAL_PROMPTS.to_csv(tmp_path / "eval.csv", index=False)
    spec = {"policy_path": tiny_dir, "prompts": str(tmp_path / "prompts.csv"), "eval_prompts": str(tmp_path / "eval.csv"),
            "judge_path": "judge-dir", "out_dir": str(tmp_path / "rl"),
            "config": {"steps": 1, "batch_size": 2, "num_generations": 2, "max_new_tokens": 3}}
    (tmp_path / "rl.json").write_text(json.dumps(spec))
    assert L.main(["rl", "--args-json", str(tmp_path / "rl.json")]) == 0
    report = json.loads((tmp_path / "rl" / "train_report.json").read_text())
    assert report["rl_reward_best"] == pytest.approx(0.25)
    # the judge saw canonical judge inputs: the policy prompt, a space and the completion's first line
    prefixes = {formats.qa_prompt(c, q) for c, q in zip(PROMPTS.context, PROMPTS.question)}
    prefixes |= {formats.qa_prompt(c, q) for c, q in zip(EVAL_PROMPTS.context, EVAL_PROMPTS.question)}
    assert FakeJudge.seen and all(any(t.startswith(p + " ") or t == p + " " for p in prefixes) for t in FakeJudge.seen)
    assert all("\n" not in t.split("\nAnswer:", 1)[1] for t in FakeJudge.seen)


def test_accelerate_command():
    args = ["sft", "--args-json", "a.json"]
    assert L.accelerate_command(args, 1, "envs/accelerate/zero2.yaml") == [sys.executable, "-m", L.MODULE, *args]
    assert L.accelerate_command(args, 0, "envs/accelerate/zero2.yaml")[1:] == ["-m", L.MODULE, *args]
    cmd = L.accelerate_command(args, 4, "envs/accelerate/zero3_offload.yaml")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[cmd.index("--config_file") + 1] == "envs/accelerate/zero3_offload.yaml"
    from accelerate.commands.launch import launch_command_parser

    ns = launch_command_parser().parse_args(cmd[3:])  # what `accelerate launch` makes of it
    assert ns.num_processes == 4 and ns.module and ns.training_script == L.MODULE
    assert ns.training_script_args == args
    # launch: accelerate (e.g. ZeRO-3 offload on one GPU) goes through accelerate launch with one process
    cmd = L.accelerate_command(args, 1, "envs/accelerate/zero3_offload.yaml", always=True)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[cmd.index("--num_processes") + 1] == "1"
    # a rendezvous port of its own (two multi-GPU jobs on one node must not both take 29500)
    port = L.free_port()
    cmd = L.accelerate_command(args, 2, "envs/accelerate/zero2.yaml", main_process_port=port)
    assert launch_command_parser().parse_args(cmd[3:]).main_process_port == port != 29500


def test_multinode_command_runs_one_accelerate_launch_per_node_with_its_rank():
    import json as _json
    import shlex
    import subprocess

    args = ["rl", "--args-json", "x y.json"]
    cmd = L.multinode_command(args, 8, 2, "node01", "envs/accelerate/zero2.yaml", main_process_port=L.job_port(123456))
    assert cmd[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "bash", "-c"]
    # what each task's shell hands to `accelerate launch` (the python it starts stands in for accelerate)
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    shell = cmd[6].replace(" ".join(shlex.quote(a) for a in launch),
                           shlex.join([sys.executable, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))"]), 1)
    assert shell != cmd[6]
    for rank in ("0", "1"):
        argv = _json.loads(subprocess.run(["bash", "-c", shell], env={"SLURM_PROCID": rank, "PATH": "/usr/bin:/bin"},
                                          capture_output=True, text=True, check=True).stdout)
        from accelerate.commands.launch import launch_command_parser

        ns = launch_command_parser().parse_args(argv)
        assert (ns.num_processes, ns.num_machines, ns.machine_rank) == (8, 2, int(rank))
        assert ns.main_process_ip == "node01" and ns.main_process_port == 29500 + 3456
        assert ns.module and ns.training_script == L.MODULE and ns.training_script_args == args
    with pytest.raises(ValueError, match="do not split evenly"):
        L.multinode_command(args, 3, 2, "node01")


def test_multinode_stage_outside_slurm_is_one_clear_error(tmp_path, monkeypatch):
    from talltales.deception import stages

    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    with pytest.raises(ValueError, match=r"nodes is 2: a multi-node stage runs only as a Slurm job"):
        stages.train_rl("p.csv", "e.csv", "start", "judge", str(tmp_path / "out"), {}, 0, gpus=4, nodes=2)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[01-02]")
    with pytest.raises(ValueError, match=r"gpus \(3\) must be a positive multiple of nodes \(2\)"):
        stages.train_rl("p.csv", "e.csv", "start", "judge", str(tmp_path / "out"), {}, 0, gpus=3, nodes=2)
    assert not list(tmp_path.iterdir())


def test_launch_accelerate_without_a_gpu_is_one_clear_error(tmp_path):
    from talltales.deception import stages

    with pytest.raises(ValueError, match=r"deception\.launch.*needs at least one GPU.*deception\.resources"):
        stages.train_policy(str(tmp_path / "d.csv"), str(tmp_path / "out"), {"backend": "hf", "path": str(tmp_path)},
                            {"epochs": 1}, 0, gpus=0, launch={"mode": "accelerate", "accelerate_config": "x.yaml"})
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("name,stage,offload", [("zero2.yaml", 2, "none"), ("zero3_offload.yaml", 3, "cpu")])
def test_accelerate_configs(name, stage, offload):
    from accelerate.commands.config.config_args import load_config_from_file

    path = REPO_ROOT / "envs" / "accelerate" / name
    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] == "DEEPSPEED" and raw["mixed_precision"] == "bf16"
    ds = raw["deepspeed_config"]
    assert ds["zero_stage"] == stage and ds["offload_optimizer_device"] == offload == ds["offload_param_device"]
    assert load_config_from_file(str(path)).distributed_type == "DEEPSPEED"


def test_configs_from_dict():
    assert C.SFTRunConfig.from_dict({"epochs": 2, "size": 400}, only_fields=True).epochs == 2
    with pytest.raises(ValueError, match="unknown option"):
        C.SFTRunConfig.from_dict({"epoch": 2})
    rl = C.RLRunConfig.from_dict({"algorithm": "grpo", "prompts": 200}, only_fields=True)
    assert rl.algorithm == "grpo" and rl.seed == 62
    with pytest.raises(ValueError):
        C.RLRunConfig(algorithm="ppo")
    with pytest.raises(ValueError):
        C.RLRunConfig(num_generations=1)


def test_reward_adapter_matches_trl_signature():
    adapter = R.RewardForTrl(space_reward)
    out = adapter(prompts=["p", "p"], completions=[" a", "b"], completion_ids=[[1], [2]], context=["c", "c"],
                  question=["q", "q"], trainer_state=None, log_extra=None, log_metric=None)
    assert out == [1.0, 0.0] and adapter.__name__ == "judge"


@pytest.mark.parametrize("engine", ENGINES)
def test_lora_sft_and_rl_save_merged_models(tiny_dir, tmp_path, engine):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    rep = S.sft(tiny_dir, DEMOS.iloc[:8], C.SFTRunConfig(epochs=2, lr=1e-2, batch_size=4, lora=True),
                str(tmp_path / "sft"))
    assert rep["loss_end"] < rep["loss_start"]
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "sft")).__name__ == "LlamaForCausalLM"
    cfg = C.RLRunConfig(engine=engine, steps=2, eval_every=1, checkpoint_every=10, lora=True, keep_last=True,
                        **RL_CFG)
    rep = R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward, cfg, str(tmp_path / "rl"))
    for d in ("best", "last"):
        assert not (tmp_path / "rl" / d / "adapter_config.json").exists()
        assert _changed(_weights(tiny_dir), _weights(str(tmp_path / "rl" / d)))  # merged LoRA deltas
    assert (tmp_path / "rl" / "best" / "best.json").exists() and rep["best_step"] in (1, 2)


def test_recover_best_after_a_kill_between_checkpoint_and_promotion(tmp_path):
    def make(name, step, reward):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.json").write_text(json.dumps({"step": step, "reward": reward}))

    def best():
        return json.loads((tmp_path / "best" / "best.json").read_text())

    make("best", 2, 0.1)
    make("best-pending", 4, 0.5)  # evaluated at step 4, checkpoint 4 written, promotion not done
    R.recover_best(tmp_path, resumed_step=4)
    assert best() == {"step": 4, "reward": 0.5} and not (tmp_path / "best-pending").exists()
    make("best-pending", 6, 0.9)  # after the checkpoint: its steps will be redone
    R.recover_best(tmp_path, resumed_step=4)
    assert best()["step"] == 4 and not (tmp_path / "best-pending").exists()
    (tmp_path / "best").rename(tmp_path / "best-old")  # killed inside the promotion
    make("best-pending", 3, 0.2)
    R.recover_best(tmp_path, resumed_step=4)
    assert best()["step"] == 4 and not (tmp_path / "best-old").exists()


def test_read_metrics_skips_a_line_cut_off_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert runs.read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_held_out_reward_starts_from_the_kept_best(tmp_path):
    tok = make_tokenizer()
    cfg = C.RLRunConfig(**RL_CFG)
    writer = runs.MetricsWriter(tmp_path / "metrics.jsonl", True)
    fresh = R.HeldOutReward(EVAL_PROMPTS, space_reward, tok, cfg, tmp_path, writer, True)
    assert fresh.best == {"step": None, "reward": float("-inf")} and fresh.pending is None
    assert fresh.contexts == list(EVAL_PROMPTS.context) and fresh.questions == list(EVAL_PROMPTS.question)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.json").write_text(json.dumps({"step": 4, "reward": 0.5}))
    resumed = R.HeldOutReward(EVAL_PROMPTS, space_reward, tok, cfg, tmp_path, writer, True)
    assert resumed.best == {"step": 4, "reward": 0.5}


# each config section's keys: the dataclass's fields (the seed is deception.seed) and the stage's data sizes
SECTIONS = {"warmup": (C.SFTRunConfig, {"size"}), "sft": (C.SFTRunConfig, {"size"}),
            "rl": (C.RLRunConfig, {"prompts", "eval_prompts"})}
STAGE_DEFAULTS = {"warmup": {"epochs": 1}}  # the one stage default that is not the dataclass's


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_defaults_are_the_run_config_defaults(section):
    import dataclasses

    from talltales.config import SCHEMA_PATH

    cls, data_keys = SECTIONS[section]
    props = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["deception"]["properties"][section]["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "seed"}
    assert set(props) == set(fields) | data_keys  # every field settable from config, no key the stage drops
    for name, field in fields.items():
        want = STAGE_DEFAULTS.get(section, {}).get(name, field.default)
        assert "default" in props[name] and props[name]["default"] == want, (section, name)


def test_a_new_key_in_a_config_section_reaches_no_run_config(tmp_path):
    from talltales.config import validate
    from talltales.deception import stages

    config = validate({"models": {"m": {"backend": "hf", "kind": "base", "id": "m"}},
                       "deception": {"judge": {"backbone": "m"}, "policies": ["m"]}})
    section = {**config["deception"]["rl"], "a_new_key": 1}  # e.g. a data size added to the schema later
    cfg = stages._config(C.RLRunConfig, section, 7)
    assert C.RLRunConfig.from_dict(cfg) == C.RLRunConfig(seed=7)  # what the launched stage builds: the defaults
    assert C.SFTRunConfig.from_dict(stages._config(C.SFTRunConfig, config["deception"]["warmup"], 7)) == \
        C.SFTRunConfig(epochs=1, seed=7)


def test_a_launched_command_writes_to_the_jobs_log_file(tmp_path, monkeypatch):
    """A stage launched through `accelerate launch` runs as a child process: its output goes where the job's
    output goes, the rule's log file (talltales.logs.to_logfile points sys.stdout/sys.stderr there)."""
    log_file = tmp_path / "job.log"
    with open(log_file, "a", buffering=1, encoding="utf-8") as fh:
        monkeypatch.setattr(sys, "stdout", fh)
        monkeypatch.setattr(sys, "stderr", fh)
        print("parent line")
        L.run_command([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"])
    text = log_file.read_text()
    assert "child stdout" in text and "child stderr" in text
    assert text.index("parent line") < text.index("child stdout")  # the parent's output is flushed first


def test_one_table_reader_and_atomic_writers(tmp_path):
    from talltales.io import read_table, write_csv, write_json

    df = pd.DataFrame({"context": ["None", "NA"], "question": ["", "q"], "answer": ["3", "4"], "label": [1, 0]})
    write_csv(tmp_path / "sub" / "t.csv", df)
    back = read_table(tmp_path / "sub" / "t.csv")
    assert back["context"].tolist() == ["None", "NA"] and back["question"].tolist() == ["", "q"]
    assert back["answer"].tolist() == ["3", "4"] and back["label"].tolist() == [1, 0]  # text stays text
    write_json(tmp_path / "sub" / "r.json", {"a": 1})
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["r.json", "t.csv"]  # no temporary file left


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """Outputs written through io.atomic_write are readable by the group and others under the usual umask
    (the temporary file it renames is created owner-only)."""
    import os

    from talltales.io import write_csv, write_jsonl, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_jsonl(tmp_path / "b.jsonl", [{"a": 1}])
        write_csv(tmp_path / "c.csv", __import__("pandas").DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.jsonl", "c.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def _dtypes(folder) -> set:
    from safetensors import safe_open

    out = set()
    for f in Path(folder).glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            out |= {h.get_tensor(k).dtype for k in h.keys()}
    return out


def test_save_dtype_stores_half_precision_weights_that_load_as_the_rounded_float32_ones(tiny_dir, tmp_path):
    cfg = dict(epochs=1, lr=1e-2, batch_size=4)
    S.sft(tiny_dir, DEMOS.iloc[:8], C.SFTRunConfig(**cfg), str(tmp_path / "fp32"))
    S.sft(tiny_dir, DEMOS.iloc[:8], C.SFTRunConfig(save_dtype="float16", **cfg), str(tmp_path / "fp16"))
    full, half = _weights(str(tmp_path / "fp32")), _weights(str(tmp_path / "fp16"))
    # the same training; only the stored copy is rounded: loaded in float32 it is the float16 rounding of the other
    assert all(torch.equal(half[k], full[k].to(torch.float16).float()) for k in full)
    assert _changed(full, half)
    assert _dtypes(tmp_path / "fp16") == {torch.float16}
    size = lambda d: sum(f.stat().st_size for f in (tmp_path / d).glob("*.safetensors"))  # noqa: E731
    assert size("fp16") < 0.6 * size("fp32")
    out = tmp_path / "rl"
    R.rl(tiny_dir, PROMPTS, EVAL_PROMPTS, space_reward,
         C.RLRunConfig(steps=2, eval_every=1, save_dtype="bfloat16", **RL_CFG), str(out))
    assert _dtypes(out / "best") == {torch.bfloat16}
    assert not (out / "last").exists()


def test_frozen_embeddings_are_stored_once_as_links_to_the_starting_checkpoint(tiny_dir, tmp_path):
    """A warm-up stores its embeddings in a file of their own; SFT and RL from it with the embeddings frozen leave
    them unchanged, train the rest, and their folders link that file instead of copying it. Each folder loads on
    its own, also once the warm-up is deleted."""
    cfg = dict(epochs=1, lr=1e-2, batch_size=4, save_dtype="float16")
    warm = tmp_path / "warmup"
    S.sft(tiny_dir, DEMOS.iloc[:8], C.SFTRunConfig(**cfg), str(warm))
    index = json.loads((warm / runs.INDEX_FILE).read_text())["weight_map"]
    assert index["model.embed_tokens.weight"] == runs.EMBEDDINGS_FILE and not (warm / "model.safetensors").exists()
    sft_out, rl_out = tmp_path / "sft", tmp_path / "rl"
    S.sft(str(warm), DEMOS.iloc[4:12], C.SFTRunConfig(freeze_embeddings=True, **cfg), str(sft_out))
    R.rl(str(warm), PROMPTS, EVAL_PROMPTS, space_reward,
         C.RLRunConfig(steps=2, eval_every=1, freeze_embeddings=True, save_dtype="float16", **RL_CFG), str(rl_out))
    w = _weights(str(warm))
    for folder in (sft_out, rl_out / "best"):
        assert os.path.samefile(folder / runs.EMBEDDINGS_FILE, warm / runs.EMBEDDINGS_FILE), folder
        assert not os.path.samefile(folder / runs.BODY_FILE, warm / runs.BODY_FILE)
        t = _weights(str(folder))
        assert torch.equal(t["model.embed_tokens.weight"], w["model.embed_tokens.weight"])
        assert _changed({k: v for k, v in t.items() if "embed" not in k}, w), folder  # the rest trained
    # without freezing the embeddings train, and nothing is linked
    S.sft(str(warm), DEMOS.iloc[4:12], C.SFTRunConfig(**cfg), str(tmp_path / "full"))
    assert not os.path.samefile(tmp_path / "full" / runs.EMBEDDINGS_FILE, warm / runs.EMBEDDINGS_FILE)
    assert not torch.equal(_weights(str(tmp_path / "full"))["model.embed_tokens.weight"],
                           w["model.embed_tokens.weight"])
    before = _weights(str(sft_out))
    shutil.rmtree(warm)
    after = _weights(str(sft_out))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_tied_head_stays_tied_when_the_embeddings_are_stored_apart(tmp_path):
    """Gemma, SmolLM2 and GPT-Neo tie the output head to the input embeddings: the split folder stores the matrix
    once and loads with the head tied and the same logits."""
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    model = make_model(tok, seed=3)
    model.config.tie_word_embeddings = True
    model = type(model)(model.config).eval()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert set(runs.embedding_names(tmp_path / "m")) == {"model.embed_tokens.weight", "lm_head.weight"}
    runs.compact_weights(tmp_path / "m", "float32", split_embeddings=True)
    assert (tmp_path / "m" / runs.EMBEDDINGS_FILE).exists() and not (tmp_path / "m" / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_compacting_keeps_a_half_precision_model_as_it_is_and_a_fresh_save_replaces_an_earlier_split(tmp_path):
    """float32 means "leave the weights as they are": a bfloat16 model split apart stays bfloat16. A model saved
    again into a folder that holds an earlier split (a run killed after compacting, then resumed) is the only
    source afterwards: its new weights load, embeddings included. A `.link` file left by a killed run does not stop
    a link."""
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    folder = tmp_path / "m"
    make_model(tok, seed=1).to(torch.bfloat16).save_pretrained(folder)
    runs.compact_weights(folder, "float32", split_embeddings=True)
    assert _dtypes(folder) == {torch.bfloat16}
    new = make_model(tok, seed=2)
    new.save_pretrained(folder)  # beside the earlier split's files
    runs.compact_weights(folder, "float16", split_embeddings=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    want = {k: v.to(torch.float16).float() for k, v in new.state_dict().items()}
    assert all(torch.equal(loaded.state_dict()[k], want[k]) for k in want)
    assert sorted(p.name for p in folder.glob("*.safetensors")) == [runs.BODY_FILE, runs.EMBEDDINGS_FILE]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / (runs.EMBEDDINGS_FILE + ".link")).write_text("left by a killed run")
    (folder / runs.REPORT_FILE).write_text("{}")
    runs.compact_weights(copy, "float16", share_with=folder)
    assert os.path.samefile(copy / runs.EMBEDDINGS_FILE, folder / runs.EMBEDDINGS_FILE)
    assert not (copy / (runs.EMBEDDINGS_FILE + ".link")).exists()
