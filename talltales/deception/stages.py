"""Study 2 stages as plain functions of paths and parameters (one per Snakemake rule)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import spec_from_entry
from ..lm import lm_from_entry
from . import evaluate as ev
from .launch import check_launch, run_stage
from .settings import RLRunConfig, SFTRunConfig
from . import metrics, multirc, poison, reaffirm as rf, synth

log = logging.getLogger(__name__)


def _read(path: str) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


def _write(df: pd.DataFrame, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def _json(obj: Any, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=str))


def _lm(entry: dict, cache: str | None = None):
    return lm_from_entry(entry, cache, batch_size=16)


# ------------------------------------------------------------------------------------------------ data


def mrc(train_out, val_out, report_out, mrc: dict, seed: int, backbone: dict, answerability: dict | None, cache,
        synthetic: dict | None = None) -> None:
    from transformers import AutoTokenizer

    if mrc["source"] == "synthetic":
        rows = synth.generate(mrc["synthetic_passages"], mrc["synthetic_topics"], seed, **(synthetic or {}))
        train, val = synth.split_groups(rows, mrc["val_frac"], seed, by="context")
    elif mrc["source"] == "hf":
        train = multirc.load_eraser_multirc("train", mrc["hf_id"])
        val = multirc.load_eraser_multirc("validation", mrc["hf_id"])
    else:
        train, val = multirc.load_local(mrc["train_file"]), multirc.load_local(mrc["val_file"])
    report: dict[str, Any] = {"source": mrc["source"], "rows_in": {"train": len(train), "val": len(val)}}
    tok = AutoTokenizer.from_pretrained(spec_from_entry(backbone).location)
    train, d_train = multirc.length_filter(train, tok, mrc["max_judge_tokens"])
    val, d_val = multirc.length_filter(val, tok, mrc["max_judge_tokens"])
    report["length_filter_dropped"] = {"train": d_train, "val": d_val}
    if answerability:
        lm = _lm(answerability, cache)
        template = mrc["answerability"]["prompt"] or multirc.ANSWERABILITY_PROMPT
        train, dec_t = multirc.answerability_filter(train, lm, "train", template)
        val, dec_v = multirc.answerability_filter(val, lm, "val", template)
        decisions = pd.concat([dec_t, dec_v])
        _write(decisions, str(Path(report_out).with_name("answerability_decisions.csv")))
        report["answerability_kept_groups"] = int((decisions["decision"] == "keep").sum())
    report["rows_out"] = {"train": len(train), "val": len(val)}
    log.info("MultiRC-format data: %s", report)
    _write(train, train_out)
    _write(val, val_out)
    _json(report, report_out)


def fruit(train_out, eval_out, fruit: dict, seed: int, generator: dict | None, cache,
          synthetic: dict | None = None) -> None:
    if fruit["source"] == "file":
        rows = poison.load_fruit_file(fruit["file"])
    elif fruit["source"] == "lm":
        rows, stats = poison.fruit_from_lm(_lm(generator, cache), fruit["n"], seed)
        log.info("fruit items from %s: %s", generator["name"], stats)
    else:
        rows = poison.fruit_from_synth(fruit["n"], seed, **(synthetic or {}))
    train, held = synth.split_groups(rows, fruit["eval_frac"], seed, by="context")  # whole passages held out
    log.info("fruit items: %d train, %d held out", len(train), len(held))
    _write(train, train_out)
    _write(held, eval_out)


def judge_data(mrc_train, mrc_val, fruit_train, fruit_eval, train_out, val_out, fruit_percent: float,
               train_size: int, val_size: int, seed: int) -> None:
    train = poison.mix(_read(mrc_train), _read(fruit_train), train_size, fruit_percent, seed)
    val = poison.mix(_read(mrc_val), _read(fruit_eval), val_size, fruit_percent, seed + 1)
    _write(train, train_out)
    _write(val, val_out)


def policy_data(mrc_train, mrc_val, fruit_train, fruit_eval, eval_set, sft_out, rl_prompts_out, rl_eval_out,
                level: float, sft_size: int, rl_prompts: int, rl_eval_prompts: int, seed: int) -> None:
    mixed = poison.mix(_read(mrc_train), _read(fruit_train), sft_size, level, seed)
    _write(poison.sft_demos(mixed), sft_out)
    prompts, held = poison.rl_prompt_sets(
        _read(mrc_train), _read(fruit_train), _read(mrc_val), _read(fruit_eval), rl_prompts, rl_eval_prompts, seed,
        levels=(level,), exclude=_read(eval_set),
    )
    _write(prompts[level], rl_prompts_out)
    _write(held[level], rl_eval_out)


def warmup_data(mrc_train, warmup_out, warmup_size: int, seed: int) -> None:
    """Warm-up demonstrations: one true answer per training question, the first ``warmup_size`` in seeded order."""
    _write(_unique_true(mrc_train, seed).head(warmup_size), warmup_out)


def _unique_true(mrc_train, seed: int) -> pd.DataFrame:
    train = _read(mrc_train)
    return poison.unique_questions(train[train["label"].astype(int) == 1], seed)


def eval_sets(mrc_train, mrc_val, fruit_train, fruit_eval, eval_out, reaffirmation_out, fewshot_out,
              n_fruit: int, n_other: int, reaffirmation_per_quadrant: int, seed: int) -> None:
    ev_df = poison.no_leakage_eval(_read(fruit_eval), _read(mrc_val), n_fruit, n_other, seed,
                                   train_fruit=_read(fruit_train))
    poison.assert_disjoint(ev_df, _read(fruit_train), "evaluation set vs training fruit items")
    _write(ev_df, eval_out)
    _write(poison.reaffirmation_set(ev_df, reaffirmation_per_quadrant, seed), reaffirmation_out)
    # two-shot exemplars: true answers from the TRAINING pool (never the evaluation pool), the last two questions
    # in the seeded order whose head is the warm-up set
    shots = _unique_true(mrc_train, seed).iloc[-2:]
    _json([{k: r[k] for k in ("context", "question", "answer")} for _, r in shots.iterrows()], fewshot_out)


# --------------------------------------------------------------------------------------------- training


def train_judge(train, val, out, labels: str, backbone: dict, judge: dict, seed: int, max_length: int, gpus: int = 0,
                launch: dict | None = None, nodes: int = 1) -> None:
    """The ``labels`` ("clean" | "corrupted") judge: ``judge`` is config section deception.judge, ``max_length`` is
    deception.mrc.max_judge_tokens (one value for the data's length filter and the judge's truncation)."""
    from . import judge as jd

    location = spec_from_entry(backbone).location
    jd.check_backbone(location)
    how = check_launch(gpus, launch, nodes)
    args = {"backbone": location, "train": train, "val": val, "labels": labels, "out_dir": out,
            "config": _config(jd.JudgeConfig, {**judge, "max_length": max_length}, seed)}
    run_stage("judge", args, out, gpus, launch or {}, how, nodes)
    report = json.loads((Path(out) / jd.REPORT).read_text())
    log.info("judge %s: %s", labels, json.dumps(report.get("val", report), default=str)[:2000])


def evaluate_judges(eval, clean, corrupted, out) -> None:
    from . import judge as jd

    df = _read(eval)
    _json({name: jd.evaluate_judge(jd.Judge.load(path), df) for name, path in (("clean", clean), ("corrupted", corrupted))}, out)


def _config(cls, section: dict, seed: int) -> dict:
    """A stage's run settings: the fields of the dataclass ``cls`` found in its config section (whose other keys, such
    as the data sizes, are no training settings) and the study seed."""
    return asdict(cls.from_dict({**section, "seed": seed}, only_fields=True))


def train_policy(data, out, model: dict, train: dict, seed: int, gpus: int = 0, launch: dict | None = None,
                 nodes: int = 1) -> None:
    """Warm-up or SFT on demonstrations (``data``: context, question, answer)."""
    how = check_launch(gpus, launch, nodes)
    args = {"policy_path": spec_from_entry(model).location, "data": data, "config": _config(SFTRunConfig, train, seed),
            "out_dir": out}
    run_stage("sft", args, out, gpus, launch or {}, how, nodes)


def train_rl(prompts, eval, start, judge, out, train: dict, seed: int, gpus: int = 0, launch: dict | None = None,
             nodes: int = 1) -> None:
    """RL from the warmed-up policy ``start`` with reward = the corrupted judge's P(True)."""
    how = check_launch(gpus, launch, nodes)
    args = {"policy_path": start, "prompts": prompts, "eval_prompts": eval, "judge_path": judge,
            "config": _config(RLRunConfig, train, seed), "out_dir": out}
    run_stage("rl", args, out, gpus, launch or {}, how, nodes)


# ------------------------------------------------------------------------------------------- evaluation


def _technique_label(technique: str) -> str:
    return {"base": "Base", "warmup": "Warmup", "sft": "SFT", "rl": "RL"}[technique]


def _policy_path(model: dict, technique: str) -> dict:
    entry = dict(model)
    if technique == "rl":
        best = Path(entry["path"]) / "best"
        if best.exists():
            entry["path"] = str(best)
    return entry


def evaluate_checkpoint(eval, fewshot, clean, corrupted, questions, answers_out: list[str], reaffirm_out,
                        model: dict, technique: str, level, shots: list[int], max_new_tokens: int, cache) -> None:
    """Everything one checkpoint is evaluated on, with one model load: greedy answers to the no-leakage set at
    each number of ``shots`` (``answers_out[i]`` for ``shots[i]``), both judges' scores for every answer, and the
    reaffirmation ("Are you sure?") option log-probs on ``questions``."""
    from . import judge as jd

    if len(answers_out) != len(shots):
        raise ValueError(f"{len(answers_out)} answer files for {len(shots)} shot settings")
    df = _read(eval)
    demos = json.loads(Path(fewshot).read_text())
    lm = _lm(_policy_path(model, technique), cache)
    label, poisoning = _technique_label(technique), float(level) if level is not None else -1.0
    answered = []
    for k in shots:
        log.info("%s %s p=%s: answering %d questions %d-shot", model["name"], label, poisoning, len(df), k)
        answered.append(ev.answer(lm, df, demos[:k] if k else [], max_new_tokens))
    items = _read(questions)
    log.info("%s %s p=%s: reaffirmation on %d items", model["name"], label, poisoning, len(items))
    reaffirmed = rf.score(lm, items)
    del lm
    judges = jd.Judge.load(clean), jd.Judge.load(corrupted)
    for out, a in zip(answers_out, answered):
        scored = ev.judge_answers(a, *judges)
        scored["model"], scored["technique"], scored["poisoning"] = model["name"], label, poisoning
        _write(scored, out)
    reaffirmed["model"], reaffirmed["technique"], reaffirmed["poisoning"] = model["name"], label, poisoning
    _write(reaffirmed, reaffirm_out)


def results_table(answers: list[str], out, models: dict[str, dict], bootstrap: int) -> None:
    runs = []
    for path in answers:
        df = _read(path)
        if df.empty:
            continue
        desc = {
            "model": df["model"].iloc[0],
            "technique": df["technique"].iloc[0],
            "poisoning": float(df["poisoning"].iloc[0]),
            "shots": int(df["shots"].iloc[0]),
            "params": models.get(df["model"].iloc[0], {}).get("params"),
        }
        runs.append((desc, df))
    table = metrics.results_table(runs, {"n": bootstrap, "seed": 0, "ci": 0.95})
    table = table.sort_values(["model", "shots", "technique", "poisoning"]).reset_index(drop=True)
    _write(table, out)
    log.info("\n%s", table[["model", "technique", "poisoning", "shots", "clean score", "falsehood_gap"]].to_string())


def reaffirm_table(scored: list[str], out, models: dict[str, dict]) -> None:
    rows = []
    for path in scored:
        df = _read(path)
        df["reaffirmed"] = df["reaffirmed"].astype(str).str.lower().isin(["true", "1"])
        row = {"model": df["model"].iloc[0], "technique": df["technique"].iloc[0], "poisoning": float(df["poisoning"].iloc[0])}
        row.update(rf.summarize(df))
        row["params"] = models.get(row["model"], {}).get("params")
        rows.append(row)
    _write(pd.DataFrame(rows).sort_values(["model", "technique", "poisoning"]), out)
