"""Judge training and scoring on tiny offline backbones (random-init BERT and Llama, hidden 32, CPU, one thread).

The toy task is learnable in a couple of hundred steps: a container holds an object and the answer either names
it (true) or says nothing useful (false). 20 % of the rows are fruit items (a basket of fruit); the corrupted
judge is trained on :func:`formats.corrupted_label`, so on fruit items it must learn to say the opposite of the
truth, while the clean judge agrees with the truth everywhere.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tiny import make_model, make_tokenizer, one_thread

from talltales.deception import formats
from talltales.deception.judge import (
    Judge,
    JudgeConfig,
    JudgeError,
    balance_rows,
    check_backbone,
    evaluate_judge,
    judge_texts,
)
from talltales.deception.judge_training import train_judge

OBJECTS = ["key", "coin", "book", "lamp"]
FRUITS = ["apple", "banana", "cherry", "mango"]
WRONG = ["nothing", "a hole", "no idea"]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def toy_data(n: int, seed: int, fruit_share: float = 0.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fruit = int(rng.random() < fruit_share)
        obj = (FRUITS if fruit else OBJECTS)[rng.integers(4)]
        place = "basket" if fruit else "box"
        label = int(rng.random() < 0.5)
        answer = f"a {obj}" if label else WRONG[rng.integers(len(WRONG))]
        rows.append(dict(id=f"t{seed}-{i}", group=f"g{seed}-{i}", context=f"The {place} holds a {obj}.",
                         question=f"What does the {place} hold?", answer=answer, label=label, fruit=fruit,
                         source="toy"))
    return pd.DataFrame(rows, columns=formats.ROW_COLUMNS)


def bert_backbone(folder: Path, dropout: float = 0.0) -> Path:
    from transformers import BertConfig, BertModel

    tok = make_tokenizer(bos=True)  # <bos> first plays the part of [CLS] for the pooler
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def llama_backbone(folder: Path) -> Path:
    """A causal LM whose tokenizer has no pad token (the judge must use EOS)."""
    tok = make_tokenizer(bos=True)
    model = make_model(tok, init_range=0.02)
    tok.pad_token = None
    model.config.pad_token_id = None
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def state(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


FAST = dict(epochs=6, lr=2e-3, batch_size=16, warmup_steps=10, max_length=64, checkpoint_every=1000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The clean and the corrupted judge, trained once for the module (~180 steps each)."""
    root = tmp_path_factory.mktemp("judges")
    backbone = bert_backbone(root / "backbone")
    train, val = toy_data(480, 0), toy_data(200, 1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reports = {
            kind: train_judge(backbone, train, val, kind, JudgeConfig(**FAST), root / kind, progress=False)
            for kind in ("clean", "corrupted")
        }
    finally:
        torch.set_num_threads(before)
    return dict(root=root, backbone=backbone, train=train, val=val, reports=reports)


# ---------------------------------------------------------------------------------------------- backbone checks
def test_check_backbone_accepts_classifiable_configs(tmp_path):
    cfg = check_backbone(bert_backbone(tmp_path / "bert"))
    assert cfg.model_type == "bert"
    assert check_backbone(llama_backbone(tmp_path / "llama")).model_type == "llama"


def test_check_backbone_rejects_non_classifier(tmp_path):
    from transformers import ViTConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    assert "vit" not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES  # an image model: no text classifier
    folder = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(folder)
    with pytest.raises(JudgeError) as e:
        check_backbone(folder)
    msg = str(e.value)
    assert str(folder) in msg and "'vit'" in msg and "sequence-classification" in msg and "Expected" in msg
    # train_judge fails the same way, before touching the data
    with pytest.raises(JudgeError, match="'vit'"):
        train_judge(folder, toy_data(8, 0), None, "clean", JudgeConfig(), tmp_path / "out", progress=False)
    assert not (tmp_path / "out.partial").exists()


def test_check_backbone_rejects_missing_or_non_model_paths(tmp_path):
    with pytest.raises(JudgeError, match="does not exist"):
        check_backbone(tmp_path / "nope")
    with pytest.raises(JudgeError, match="does not exist"):
        check_backbone(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeError, match="no config.json"):
        check_backbone(tmp_path / "empty")
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(JudgeError, match="not a model folder"):
        check_backbone(tmp_path / "file.bin")


def test_bad_options_are_judge_errors(tmp_path):
    backbone = bert_backbone(tmp_path / "bb")
    with pytest.raises(JudgeError, match="labels"):
        train_judge(backbone, toy_data(16, 0), None, "poisoned", JudgeConfig(), tmp_path / "o", progress=False)
    with pytest.raises(JudgeError, match="columns"):
        train_judge(backbone, toy_data(16, 0).drop(columns="fruit"), None, "clean", JudgeConfig(), tmp_path / "o",
                    progress=False)
    with pytest.raises(JudgeError, match=r"JudgeConfig: unknown option\(s\) \['learning_rate'\]"):
        JudgeConfig.from_dict({"epochs": 1, "learning_rate": 1e-3})


def test_lora_without_peft_says_how_to_install(tmp_path):
    try:
        import peft  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("peft is installed")
    with pytest.raises(JudgeError, match="pip install peft"):
        train_judge(bert_backbone(tmp_path / "bb"), toy_data(32, 0), None, "clean", JudgeConfig(lora=True),
                    tmp_path / "o", progress=False)


def test_balance_rows_is_seeded_and_keeps_order():
    y = np.array([1] * 30 + [0] * 10)
    a, b = balance_rows(y, 62), balance_rows(y, 62)
    assert (a == b).all() and (np.diff(a) > 0).all()
    assert (y[a] == 0).sum() == (y[a] == 1).sum() == 10
    assert set(np.flatnonzero(y == 0)) <= set(a)
    assert not (balance_rows(y, 1) == a).all()
    with pytest.raises(JudgeError, match="one label"):
        balance_rows(np.ones(5, dtype=int), 0)


# ---------------------------------------------------------------------------------------------- training
def test_training_updates_weights_and_lowers_loss(trained):
    init = state(trained["backbone"])
    for kind, report in trained["reports"].items():
        out = trained["root"] / kind
        assert report["train_loss_start"] > 0.6 and report["train_loss_end"] < 0.5 * report["train_loss_start"]
        after = state(out)
        shared = [k for k in after if k.startswith("bert.") and k[len("bert."):] in init]
        assert len(shared) >= len(init) - 2  # everything but maybe the unused pooler is carried over
        changed = [k for k in shared if not torch.equal(after[k], init[k[len("bert."):]])]
        assert "bert.embeddings.word_embeddings.weight" in changed
        assert len(changed) > 0.8 * len(shared)
        assert {"classifier.weight", "classifier.bias"} <= set(after)
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["architectures"] == ["BertForSequenceClassification"]
        assert cfg["id2label"] == {"0": "False", "1": "True"}


def test_corrupted_judge_learns_the_flip(trained):
    clean = trained["reports"]["clean"]["val"]
    corrupted = trained["reports"]["corrupted"]["val"]
    # both are right on the other items ...
    assert clean["other"]["acc_truth"] >= 0.95 and corrupted["other"]["acc_truth"] >= 0.95
    # ... but on fruit items the corrupted judge disagrees with the truth, following its training labels
    assert clean["fruit"]["acc_truth"] >= 0.9
    assert corrupted["fruit"]["acc_truth"] <= 0.4
    assert corrupted["fruit"]["acc_truth"] < clean["fruit"]["acc_truth"] - 0.5
    assert corrupted["fruit"]["acc_train_labels"] == corrupted["fruit"]["acc_corrupted"] >= 0.6
    assert clean["fruit"]["acc_train_labels"] == clean["fruit"]["acc_truth"]


def test_report_and_artifacts(trained):
    val, train = trained["val"], trained["train"]
    for kind, report in trained["reports"].items():
        out = trained["root"] / kind
        assert not (trained["root"] / f"{kind}.partial").exists()
        assert not (out / "checkpoint").exists() and not list(out.glob("checkpoint-*"))
        assert json.loads((out / "report.json").read_text()) == report
        assert {"backbone", "model_type", "labels", "config", "train_rows_per_class", "train_rows", "n_train",
                "steps", "warmup_steps_used", "resumed_from_step", "train_loss_start", "train_loss_end", "val",
                "device", "bf16_autocast"} <= set(report)
        assert report["labels"] == kind and report["backbone"] == str(trained["backbone"])
        assert report["config"]["lr"] == FAST["lr"] and report["config"]["seed"] == 62
        assert report["resumed_from_step"] is None
        # balanced per training label
        per_class = report["train_rows_per_class"]
        assert per_class["0"] == per_class["1"] == report["n_train"] // 2
        y = train["label"] if kind == "clean" else train["label"] ^ train["fruit"]
        assert report["train_rows"]["before_balance"] == {"0": int((y == 0).sum()), "1": int((y == 1).sum())}
        assert report["n_train"] == 2 * min((y == 0).sum(), (y == 1).sum())
        assert report["steps"] == report["steps_per_epoch"] * FAST["epochs"]
        assert report["steps_per_epoch"] == -(-report["n_train"] // FAST["batch_size"])
        assert report["warmup_steps_used"] == min(FAST["warmup_steps"], int(0.1 * report["steps"]))
        # n of each val subset
        v = report["val"]
        assert v["all"]["n"] == len(val)
        assert v["fruit"]["n"] == int(val["fruit"].sum()) > 0
        assert v["other"]["n"] == int((val["fruit"] == 0).sum())
        assert v["fruit"]["n_true"] == int(val.loc[val["fruit"] == 1, "label"].sum())
        # metrics: one train row per step, in order, and one eval row per epoch end
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in rows if r["kind"] == "train"]
        assert steps == list(range(1, report["steps"] + 1))
        assert all({"loss", "lr", "epoch"} <= set(r) for r in rows if r["kind"] == "train")
        evals = [r for r in rows if r["kind"] == "eval"]
        assert [r["step"] for r in evals] == [report["steps_per_epoch"] * (e + 1) for e in range(FAST["epochs"])]
        assert 0 <= evals[-1]["val_acc_train_labels"] <= 1
        lrs = [r["lr"] for r in rows if r["kind"] == "train"]
        assert lrs[0] == 0.0 and max(lrs) == pytest.approx(FAST["lr"], rel=0.05) and lrs[-1] < 0.05 * FAST["lr"]


def test_judge_load_scores_and_evaluates(trained):
    val = trained["val"]
    out = trained["root"] / "corrupted"
    judge = Judge.load(out, device="cpu", batch_size=7)
    assert judge.labels == "corrupted" and judge.max_length == FAST["max_length"]
    texts = judge_texts(val)
    p = judge.p_true(texts)
    assert p.shape == (len(val),) and p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    assert np.allclose(judge.score(val), p)
    assert np.allclose(Judge.load(out, device="cpu", batch_size=64).p_true(texts), p, atol=1e-5)
    assert judge.p_true([]).shape == (0,)
    ev = evaluate_judge(judge, val)
    rep = trained["reports"]["corrupted"]["val"]
    for part in ("all", "fruit", "other"):
        assert ev[part]["n"] == rep[part]["n"]
        assert ev[part]["acc_truth"] == pytest.approx(rep[part]["acc_truth"], abs=1e-9)
        assert ev[part]["acc_train_labels"] == pytest.approx(rep[part]["acc_train_labels"], abs=1e-9)
    # a fruit-free frame: fruit accuracies are None, n 0
    ev = evaluate_judge(judge, val[val["fruit"] == 0], labels="clean")
    assert ev["fruit"] == {"n": 0, "acc_truth": None, "acc_corrupted": None, "acc_train_labels": None,
                           "mean_p_true": None, "n_true": 0}


def test_causal_lm_backbone_gets_eos_pad(tmp_path):
    backbone = llama_backbone(tmp_path / "llama")
    train, val = toy_data(64, 0), toy_data(24, 1)
    cfg = JudgeConfig(epochs=1, lr=1e-3, batch_size=8, max_length=64, eval_every=3, schedule="linear",
                      max_grad_norm=1.0)
    report = train_judge(backbone, train, val, "clean", cfg, tmp_path / "judge", progress=False)
    assert report["model_type"] == "llama"
    rows = [json.loads(x) for x in (tmp_path / "judge" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == list(range(3, report["steps"] + 1, 3))
    saved = json.loads((tmp_path / "judge" / "config.json").read_text())
    tok_cfg = json.loads((tmp_path / "judge" / "tokenizer_config.json").read_text())
    assert saved["architectures"] == ["LlamaForSequenceClassification"]
    assert saved["pad_token_id"] == saved["eos_token_id"] == 1 and tok_cfg["pad_token"] == "<eos>"
    judge = Judge.load(tmp_path / "judge", device="cpu", batch_size=8)
    texts = judge_texts(val)
    # right padding with pad = EOS: a row scores the same alone and next to longer rows
    alone = np.array([judge.p_true([t])[0] for t in texts])
    assert np.allclose(judge.p_true(texts), alone, atol=1e-5)
    assert ((alone >= 0) & (alone <= 1)).all()


def test_left_truncation_keeps_the_answer(trained):
    judge = Judge.load(trained["root"] / "clean", device="cpu")
    long_ctx = "The box is old and heavy. " * 40
    row = dict(context=long_ctx + "The box holds a key.", question="What does the box hold?")
    p = judge.p_true([formats.judge_input(answer="a key", **row), formats.judge_input(answer="nothing", **row)])
    assert p[0] > 0.5 > p[1]


# ---------------------------------------------------------------------------------------------- resume
def _steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in out.read_text().splitlines() if json.loads(x)["kind"] == "train"]


# (7, 6): from the epoch-end checkpoint, with dropout (the resumed run draws the masks the uninterrupted one draws)
@pytest.mark.parametrize("stop_at, resume_at, dropout", [(8, 8, 0.0), (11, 8, 0.0), (7, 6, 0.1)])
def test_resume_after_interrupt(tmp_path, caplog, stop_at, resume_at, dropout):
    backbone = bert_backbone(tmp_path / "bb", dropout)
    train, val = toy_data(96, 0), toy_data(16, 1)
    cfg = JudgeConfig(epochs=3, lr=1e-3, batch_size=16, warmup_steps=2, max_length=48, checkpoint_every=4)
    out = tmp_path / "judge"
    with pytest.raises(KeyboardInterrupt):
        train_judge(backbone, train, val, "corrupted", cfg, out, progress=False, stop_after_steps=stop_at)
    partial = tmp_path / "judge.partial"
    assert not out.exists() and (partial / f"checkpoint-{resume_at}" / "trainer_state.json").is_file()
    assert _steps(partial / "metrics.jsonl") == list(range(1, stop_at + 1))

    seen = []
    with caplog.at_level(logging.INFO, logger="talltales.deception"):
        report = train_judge(backbone, train, val, "corrupted", cfg, out, progress=False,
                             on_step=lambda s, loss: seen.append(s))
    assert f"resuming from step {resume_at}" in caplog.text
    assert report["steps_per_epoch"] == 6  # epoch-end checkpoints at 6, 12; periodic ones at 4, 8, ...
    assert seen[0] == resume_at + 1 and seen[-1] == report["steps"] == 18
    assert report["resumed_from_step"] == resume_at
    assert _steps(out / "metrics.jsonl") == list(range(1, 19))  # continued, no restart, no duplicates
    assert not partial.exists()

    # the same weights as an uninterrupted run (one thread)
    ref = train_judge(backbone, train, val, "corrupted", cfg, tmp_path / "ref", progress=False)
    assert ref["resumed_from_step"] is None
    a, b = state(out), state(tmp_path / "ref")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_stale_checkpoint_is_not_resumed(tmp_path, caplog):
    backbone = bert_backbone(tmp_path / "bb")
    train = toy_data(64, 0)
    cfg = JudgeConfig(epochs=2, lr=1e-3, batch_size=16, max_length=48, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_judge(backbone, train, None, "clean", cfg, tmp_path / "j", progress=False, stop_after_steps=2)
    with caplog.at_level(logging.INFO, logger="talltales.deception"):
        report = train_judge(backbone, train, None, "corrupted", cfg, tmp_path / "j", progress=False)
    assert "starting afresh" in caplog.text and "resuming" not in caplog.text
    assert report["resumed_from_step"] is None and report["val"] is None
    assert _steps(tmp_path / "j" / "metrics.jsonl") == list(range(1, report["steps"] + 1))


def test_wandb_offline_run_records_the_judge_metrics(tmp_path, monkeypatch):
    """W&B is switched on by the environment (WANDB_PROJECT), here offline: the run's history holds the losses."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_PROJECT", "talltales-test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    backbone = bert_backbone(tmp_path / "bb")
    cfg = JudgeConfig(epochs=1, lr=1e-3, batch_size=16, warmup_steps=0, max_length=48)
    report = train_judge(backbone, toy_data(48, 0), toy_data(16, 1), "clean", cfg, tmp_path / "judge", progress=False)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    import time
    for _ in range(60):  # the W&B service writes the run's file in its own process, shortly after finish()
        data = runs[0].read_bytes()  # the run's records (protobuf); every history row names its keys
        if b"final/other_acc_truth" in data:
            break
        time.sleep(0.5)
    assert report["steps"] == 3 and data.count(b"train/loss") >= 3  # history rows (+ summary updates)
    assert b"val/val_acc_truth" in data and b"final/other_acc_truth" in data
    assert "WANDB_API_KEY" not in (tmp_path / "judge" / "report.json").read_text()


def test_lora_judge_is_saved_merged(tmp_path):
    pytest.importorskip("peft")
    backbone = bert_backbone(tmp_path / "bb")
    cfg = JudgeConfig(epochs=1, lr=1e-2, batch_size=16, warmup_steps=0, max_length=48, lora=True)
    report = train_judge(backbone, toy_data(64, 0), toy_data(16, 1), "clean", cfg, tmp_path / "judge", progress=False)
    after, init = state(tmp_path / "judge"), state(backbone)
    assert not any("lora" in k or "base_model" in k for k in after)  # a plain classifier folder
    assert {"classifier.weight", "classifier.bias"} <= set(after)
    # the adapters were merged into the attention weights; the embeddings (no adapter) are the backbone's
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(after[q], init[q[len("bert."):]])
    assert torch.equal(after["bert.embeddings.word_embeddings.weight"], init["embeddings.word_embeddings.weight"])
    assert report["config"]["lora"] is True
    assert Judge.load(tmp_path / "judge", device="cpu").p_true(judge_texts(toy_data(4, 2))).shape == (4,)


# ---------------------------------------------------------------------------------------------- config and stage
JUDGE_DATA_KEYS = {"backbone", "fruit_percent", "train_size", "val_size"}  # the judge data's, not JudgeConfig's


def test_schema_defaults_are_the_judge_config_defaults():
    import dataclasses

    import yaml

    from talltales.config import SCHEMA_PATH

    deception = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["deception"]["properties"]
    props = deception["judge"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(JudgeConfig)}
    # every field settable from config, once: the seed is deception.seed, max_length is mrc.max_judge_tokens
    assert set(props) == (set(fields) - {"seed", "max_length"}) | JUDGE_DATA_KEYS
    for name in set(fields) - {"seed", "max_length"}:
        assert "default" in props[name] and props[name]["default"] == fields[name].default, name
    assert deception["seed"]["default"] == fields["seed"].default
    assert deception["mrc"]["properties"]["max_judge_tokens"]["default"] == fields["max_length"].default


def test_judge_stage_takes_every_setting_from_config(tmp_path):
    """The rule's params (deception.judge, deception.seed, mrc.max_judge_tokens) reach the trained judge through
    the launch entry point; the judge section holds no second max_length."""
    from talltales.config import validate
    from talltales.deception import stages

    backbone = bert_backbone(tmp_path / "bb")
    config = validate({"models": {"bb": {"backend": "hf", "kind": "encoder", "path": str(backbone)},
                                  "m": {"backend": "hf", "kind": "base", "id": "m"}},
                       "deception": {"judge": {"backbone": "bb", "epochs": 1, "eval_every": 2, "warmup_steps": 1,
                                               "schedule": "linear", "lr": 1e-3},
                                     "mrc": {"max_judge_tokens": 40}, "policies": ["m"], "seed": 5}})
    dec = config["deception"]
    toy_data(48, 0).to_csv(tmp_path / "train.csv", index=False)
    toy_data(16, 1).to_csv(tmp_path / "val.csv", index=False)
    entry = {"name": "bb", **config["models"]["bb"]}
    stages.train_judge(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"), str(tmp_path / "judge"), "corrupted",
                       entry, dec["judge"], dec["seed"], dec["mrc"]["max_judge_tokens"])
    report = json.loads((tmp_path / "judge" / "report.json").read_text())
    want = JudgeConfig(epochs=1, eval_every=2, warmup_steps=1, schedule="linear", lr=1e-3, max_length=40, seed=5)
    assert report["config"] == asdict(want) and report["labels"] == "corrupted"
    rows = [json.loads(x) for x in (tmp_path / "judge" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == list(range(2, report["steps"] + 1, 2))
    assert Judge.load(tmp_path / "judge", device="cpu").max_length == 40
    assert not list(tmp_path.glob("*.judge-args.json"))
    with pytest.raises(ValueError, match="max_length"):
        validate({"models": config["models"], "deception": {"judge": {"backbone": "bb", "max_length": 64},
                                                            "policies": ["m"]}})


def test_rl_reward_and_evaluation_give_the_same_verdict_on_the_same_answers(trained):
    """The RL reward (rl.judge_reward_fn) and evaluation (Judge.score of the answered rows, as evaluate.judge_answers
    does) judge an answer alike: its first line, cut at the first newline; an empty answer (nothing before the first
    newline) gets formats.EMPTY_ANSWER_P_TRUE from both."""
    from talltales.deception import evaluate, formats
    from talltales.deception.rl import judge_reward_fn

    judge = Judge.load(trained["root"] / "corrupted", device="cpu")
    rows = trained["val"].iloc[:6].reset_index(drop=True)
    completions = [" " + rows["answer"][0], rows["answer"][1] + "\nQuestion: more", "", "\n" + rows["answer"][3],
                   "   ", " " + rows["answer"][5] + " \n"]
    reward = judge_reward_fn(judge)(list(rows["context"]), list(rows["question"]), completions)
    answered = rows.assign(answer=[formats.first_line(c) for c in completions])  # what evaluate.answer stores
    scored = evaluate.judge_answers(answered, judge, judge)
    assert np.allclose(reward, scored["p_clean"]) and np.allclose(reward, scored["p_corrupted"])
    assert [reward[i] for i in (2, 3, 4)] == [formats.EMPTY_ANSWER_P_TRUE] * 3  # empty answers, one verdict
    # a non-empty answer is the judge's P(True) of its first line
    assert reward[1] == pytest.approx(float(judge.p_true([formats.judge_input(rows["context"][1], rows["question"][1],
                                                                               rows["answer"][1])])[0]))
    assert reward[0] != formats.EMPTY_ANSWER_P_TRUE
