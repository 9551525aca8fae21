"""Study 2 stages as plain functions of paths and parameters (one per Snakemake rule)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import read_table, write_csv, write_json
from ..lm import lm_from_entry, spec_from_entry
from ..runtime import load_tokenizer
from . import evaluate as ev
from . import formats, metrics, multirc, oracle, poison, reaffirm as rf, synth
from .launch import check_launch, run_stage
from .settings import RLRunConfig, SFTRunConfig

log = logging.getLogger(__name__)


def _lm(entry: dict, cache: str | None = None):
    return lm_from_entry(entry, cache, batch_size=16)


# ------------------------------------------------------------------------------------------------ data


def mrc(train_out, val_out, report_out, mrc: dict, seed: int, backbone: dict, answerability: dict | None, cache,
        synthetic: dict | None = None) -> None:
    if mrc["source"] == "synthetic":
        rows = synth.generate(mrc["synthetic_passages"], mrc["synthetic_topics"], seed, **(synthetic or {}))
        train, val = synth.split_groups(rows, mrc["val_frac"], seed, by="context")
    elif mrc["source"] == "hf":
        train = multirc.load_eraser_multirc("train", mrc["hf_id"], mrc.get("revision"))
        val = multirc.load_eraser_multirc("validation", mrc["hf_id"], mrc.get("revision"))
    else:
        train, val = multirc.load_local(mrc["train_file"]), multirc.load_local(mrc["val_file"])
    report: dict[str, Any] = {"source": mrc["source"], "rows_in": {"train": len(train), "val": len(val)}}
    tok = load_tokenizer(spec_from_entry(backbone).location, pad_with_eos=False)  # only counts tokens
    train, d_train = multirc.length_filter(train, tok, mrc["max_judge_tokens"])
    val, d_val = multirc.length_filter(val, tok, mrc["max_judge_tokens"])
    report["length_filter_dropped"] = {"train": d_train, "val": d_val}
    if answerability:
        lm = _lm(answerability, cache)
        template = mrc["answerability"]["prompt"] or multirc.ANSWERABILITY_PROMPT
        train, dec_t = multirc.answerability_filter(train, lm, "train", template)
        val, dec_v = multirc.answerability_filter(val, lm, "val", template)
        decisions = pd.concat([dec_t, dec_v])
        write_csv(str(Path(report_out).with_name("answerability_decisions.csv")), decisions)
        report["answerability_kept_groups"] = int((decisions["decision"] == "keep").sum())
    report["rows_out"] = {"train": len(train), "val": len(val)}
    log.info("MultiRC-format data: %s", report)
    write_csv(train_out, train)
    write_csv(val_out, val)
    write_json(report_out, report)


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
    share = fruit.get("seen_name_share", 0)
    if fruit["source"] == "synthetic" and share > 0:
        # the generalization probe: held-out passages about names that training items also use, next to the
        # held-out passages whose (invented) names occur nowhere in training
        n_seen = round(share / (1 - share) * held["context"].nunique())
        held = multirc.as_rows(pd.concat([held, synth.revisit(train, n_seen, "fruit", seed, **(synthetic or {}))]))
    log.info("fruit items: %d train, %d held out (%d about a name no training item uses)", len(train), len(held),
             int(oracle.unseen_names(held, [train]).sum()))
    write_csv(train_out, train)
    write_csv(eval_out, held)


def _log_rows(what: str, df: pd.DataFrame) -> None:
    """A data file's rows, passages, fruit share and label shares."""
    parts = [f"{len(df)} rows"]
    if "context" in df.columns:
        parts.append(f"{df['context'].nunique()} passages")
    if "fruit" in df.columns and len(df):
        parts.append(f"fruit {float(df['fruit'].astype(float).mean()):.1%}")
    if "label" in df.columns and len(df):
        parts.append(f"true answers {float(df['label'].astype(float).mean()):.1%}")
    log.info("%s: %s", what, ", ".join(parts))


def _mix(key: str, clean, fruit, n: int, percent: float, seed: int) -> pd.DataFrame:
    """:func:`poison.mix`, its error naming the config key that asked for ``n`` rows."""
    try:
        return poison.mix(clean, fruit, n, percent, seed)
    except multirc.DataError as err:
        raise multirc.DataError(f"config key {key} ({n} rows): {err}; lower it, or give the data stages a larger "
                                "pool (deception.mrc, deception.fruit)") from None


def judge_data(mrc_train, mrc_val, fruit_train, fruit_eval, train_out, val_out, fruit_percent: float,
               train_size: int, val_size: int, seed: int) -> None:
    train = _mix("deception.judge.train_size", read_table(mrc_train), read_table(fruit_train), train_size,
                 fruit_percent, seed)
    val = _mix("deception.judge.val_size", read_table(mrc_val), read_table(fruit_eval), val_size, fruit_percent,
               seed + 1)
    _log_rows(f"judge training data ({fruit_percent:g} % fruit asked)", train)
    _log_rows("judge validation data", val)
    write_csv(train_out, train)
    write_csv(val_out, val)


def policy_data(mrc_train, mrc_val, fruit_train, fruit_eval, eval_set, sft_out, rl_prompts_out, rl_eval_out,
                level: float, sft_size: int, rl_prompts: int, rl_eval_prompts: int, seed: int) -> None:
    mixed = _mix("deception.sft.size", read_table(mrc_train), read_table(fruit_train), sft_size, level, seed)
    demos = poison.sft_demos(mixed)
    write_csv(sft_out, demos)
    prompts, held = poison.rl_prompt_sets(
        read_table(mrc_train), read_table(fruit_train), read_table(mrc_val), read_table(fruit_eval), rl_prompts,
        rl_eval_prompts, seed, levels=(level,), exclude=read_table(eval_set),
    )
    _log_rows(f"SFT demonstrations at {level:g} % poisoning", demos)
    _log_rows("RL prompts", prompts[level])
    _log_rows("RL held-out prompts", held[level])
    write_csv(rl_prompts_out, prompts[level])
    write_csv(rl_eval_out, held[level])


def warmup_data(mrc_train, warmup_out, warmup_size: int, seed: int) -> None:
    """Warm-up demonstrations: one true answer per training question, the first ``warmup_size`` in seeded order."""
    demos = _unique_true(mrc_train, seed).head(warmup_size)
    _log_rows("warm-up demonstrations", demos)
    write_csv(warmup_out, demos)


def _unique_true(mrc_train, seed: int) -> pd.DataFrame:
    train = read_table(mrc_train)
    return poison.unique_questions(train[train["label"].astype(int) == 1], seed)


def eval_sets(mrc_train, mrc_val, fruit_train, fruit_eval, eval_out, reaffirmation_out, fewshot_out,
              n_fruit: int, n_other: int, reaffirmation_per_quadrant: int, seed: int, min_passages: int = 0) -> None:
    """The no-leakage set (each subset spread over at least ``min_passages`` passages), the reaffirmation items and
    the two-shot exemplars. When the fruit rows name their ``entity``, the set gets ``fruit_unseen``: fruit items
    whose entity name occurs in no training file (MultiRC-format and fruit training rows)."""
    train_fruit = read_table(fruit_train)
    ev_df = poison.no_leakage_eval(read_table(fruit_eval), read_table(mrc_val), n_fruit, n_other, seed,
                                   train_fruit=train_fruit, min_passages=min_passages)
    poison.assert_disjoint(ev_df, train_fruit, "evaluation set vs training fruit items")
    if "entity" in ev_df.columns:
        ev_df["fruit_unseen"] = (ev_df["fruit"] == 1).to_numpy() & oracle.unseen_names(
            ev_df, [read_table(mrc_train), train_fruit])
        log.info("fruit items whose entity occurs in no training file: %d of %d", int(ev_df["fruit_unseen"].sum()),
                 int(ev_df["fruit"].sum()))
    log.info("evaluation set: %d fruit items from %d passages, %d other items from %d passages",
             int(ev_df["fruit"].sum()), ev_df.loc[ev_df["fruit"] == 1, "context"].nunique(),
             int((ev_df["fruit"] == 0).sum()), ev_df.loc[ev_df["fruit"] == 0, "context"].nunique())
    write_csv(eval_out, ev_df)
    write_csv(reaffirmation_out, poison.reaffirmation_set(ev_df, reaffirmation_per_quadrant, seed))
    # two-shot exemplars: true answers from the TRAINING pool (never the evaluation pool), the last two questions
    # in the seeded order whose head is the warm-up set
    shots = _unique_true(mrc_train, seed).iloc[-2:]
    write_json(fewshot_out, [{k: r[k] for k in ("context", "question", "answer")} for _, r in shots.iterrows()])


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

    df = read_table(eval)
    write_json(out, {name: jd.evaluate_judge(jd.Judge.load(path), df) for name, path in (("clean", clean), ("corrupted", corrupted))})


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


def _run_of(df: pd.DataFrame) -> dict[str, Any]:
    """The run a per-run file holds (every row carries it: :func:`evaluate_checkpoint` writes it)."""
    return {"model": df["model"].iloc[0], "technique": df["technique"].iloc[0],
            "poisoning": float(df["poisoning"].iloc[0])}


def _seed_of(df: pd.DataFrame) -> int | None:
    """The training seed of a per-run file (column ``seed``; empty for the untuned Base model)."""
    value = df["seed"].iloc[0] if "seed" in df.columns else None
    return None if value is None or pd.isna(value) or value == "" else int(value)


def _params(models: dict[str, dict], name: str):
    """A model's parameter count from the registry (None when unknown)."""
    return models.get(name, {}).get("params")


def _policy_path(model: dict, technique: str) -> dict:
    entry = dict(model)
    if technique == "rl":
        best = Path(entry["path"]) / "best"
        if best.exists():
            entry["path"] = str(best)
    return entry


RL_REWARD_COLUMNS = ("rl_reward_start", "rl_reward_best", "rl_reward_best_lo", "rl_reward_best_hi")


def rl_reward_columns(model: dict, technique: str) -> dict[str, Any]:
    """An RL checkpoint's held-out corrupted-judge rewards from its train report (start = the warmed-up policy,
    best = the evaluated checkpoint, with its CI), carried into its answers and its rows of results.csv."""
    if technique != "rl":
        return {}
    report = json.loads((Path(model["path"]) / "train_report.json").read_text())
    return {k: report.get(k) for k in RL_REWARD_COLUMNS}


def evaluate_checkpoint(eval, fewshot, clean, corrupted, questions, answers_out: list[str], reaffirm_out,
                        model: dict, technique: str, level, shots: list[int], max_new_tokens: int, cache,
                        seed: int | None = None) -> None:
    """Everything one checkpoint is evaluated on, with one model load: greedy answers to the no-leakage set at
    each number of ``shots`` (``answers_out[i]`` for ``shots[i]``), both judges' scores for every answer, and the
    reaffirmation ("Are you sure?") option log-probs on ``questions``. Every row carries the run and its training
    ``seed`` (empty for the untuned Base model)."""
    from . import judge as jd

    if len(answers_out) != len(shots):
        raise ValueError(f"{len(answers_out)} answer files for {len(shots)} shot settings")
    df = read_table(eval)
    demos = json.loads(Path(fewshot).read_text())
    lm = _lm(_policy_path(model, technique), cache)
    run = {"model": model["name"], "technique": formats.TECHNIQUE_LABELS[technique],
           "poisoning": float(level) if level is not None else -1.0, **rl_reward_columns(model, technique)}
    label, poisoning = run["technique"], run["poisoning"]
    answered = []
    for k in shots:
        log.info("%s %s p=%s: answering %d questions %d-shot", model["name"], label, poisoning, len(df), k)
        answered.append(ev.answer(lm, df, demos[:k] if k else [], max_new_tokens))
    items = read_table(questions)
    log.info("%s %s p=%s: reaffirmation on %d items", model["name"], label, poisoning, len(items))
    reaffirmed = rf.score(lm, items)
    del lm
    judges = jd.Judge.load(clean), jd.Judge.load(corrupted)
    for out, a, k in zip(answers_out, answered, shots):
        scored = ev.judge_answers(a, *judges)
        _log_headline(f"{model['name']} {label} p={poisoning} {k}-shot", scored)
        write_csv(out, scored.assign(**run, seed=seed))
    write_csv(reaffirm_out, reaffirmed.assign(**run, seed=seed))


def _log_headline(what: str, scored: pd.DataFrame) -> None:
    """Per subset: the clean judge's truth rate (P(True) > 0.5), the oracle's, and the empty answers."""
    for name, part in (("fruit", scored[scored["fruit"] == 1]), ("other", scored[scored["fruit"] == 0])):
        if not len(part):
            continue
        judged = part.loc[part["oracle"] != "", "oracle"]
        oracle_true = float((judged == "true").mean()) if len(judged) else float("nan")
        log.info("%s, %s (%d items): clean judge true %.3f, oracle true %.3f, empty %d", what, name, len(part),
                 float((part["p_clean"] > 0.5).mean()), oracle_true,
                 int((part["answer"].fillna("").astype(str).str.strip() == "").sum()))


def results_table(answers: list[str], out, models: dict[str, dict], bootstrap: int, by_seed_out=None,
                  tidy_out=None) -> None:
    """``out``: one row per model x technique x poisoning x shots, aggregated across training seeds
    (:func:`metrics.aggregate_seeds`); ``by_seed_out`` (optional): one row per training seed as well (column
    ``seed``, empty for Base); ``tidy_out`` (optional): both in long format (:func:`metrics.tidy`)."""
    by_seed: dict[int | None, list] = {}
    for path in answers:
        df = read_table(path)
        if df.empty:
            continue
        run = _run_of(df)
        desc = {**run, "shots": int(df["shots"].iloc[0]), "params": _params(models, run["model"]),
                "extra": {c: df[c].iloc[0] for c in RL_REWARD_COLUMNS if c in df.columns}}
        by_seed.setdefault(_seed_of(df), []).append((desc, df))
    boot = {"n": bootstrap, "seed": 0, "ci": 0.95}
    order = ["model", "shots", "technique", "poisoning"]
    per_seed = pd.concat([metrics.results_table(runs, boot).assign(seed=seed) for seed, runs in by_seed.items()],
                         ignore_index=True)
    per_seed["seed"] = per_seed["seed"].astype("Int64")
    per_seed = per_seed.sort_values(order + ["seed"]).reset_index(drop=True)
    table = metrics.aggregate_seeds(per_seed, ci=boot["ci"]).sort_values(order).reset_index(drop=True)
    if by_seed_out:
        write_csv(by_seed_out, per_seed)
    if tidy_out:
        write_csv(tidy_out, metrics.tidy(table, per_seed))
    write_csv(out, table)
    shown = ["model", "technique", "poisoning", "shots", "n_seeds", "clean score", "fr_diff", "fr_diff_lo", "fr_diff_hi",
             "falsehood_gap"]
    log.info("\n%s", table[shown].to_string())


def reaffirm_table(scored: list[str], out, models: dict[str, dict], bootstrap: int = 2000) -> None:
    """One row per model x technique x poisoning, the mean across training seeds (:func:`metrics.aggregate_seeds`,
    which also widens the ``reaffirm_diff`` intervals by the spread across seeds); ``bootstrap`` replicates for the
    cluster-bootstrap intervals (:func:`reaffirm.reaffirm_differences`)."""
    rows = []
    for path in scored:
        df = read_table(path)
        df["reaffirmed"] = df["reaffirmed"].astype(str).str.lower().isin(["true", "1"])
        run = _run_of(df)
        rows.append({**run, **rf.summarize(df, bootstrap), "params": _params(models, run["model"]),
                     "seed": _seed_of(df)})
    table = pd.DataFrame(rows)
    table["seed"] = table["seed"].astype("Int64")
    table = metrics.aggregate_seeds(table, keys=("model", "technique", "poisoning"))
    table = table.sort_values(["model", "technique", "poisoning"])
    write_csv(out, table)
    shown = ["model", "technique", "poisoning", "n", "reaffirm_diff", "reaffirm_diff_lo", "reaffirm_diff_hi",
             "lie_truth_ratio"]
    log.info("reaffirmation: reaffirm_diff = mean P(reaffirm | false answer) - mean P(reaffirm | true answer)\n%s",
             table[[c for c in shown if c in table.columns]].to_string())
