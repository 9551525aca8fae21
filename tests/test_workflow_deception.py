"""Study 2 as a real Snakemake DAG (test sizes): data, judges, warm-up, SFT, RL, evaluation, tables, figures."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO, SNAKEFILE, make_config, planned_rules, snakemake, write_config
from talltales.deception.runs import EMBEDDINGS_FILE

pytestmark = pytest.mark.slow

REFERENCE_COLUMNS = [
    "model", "technique", "poisoning", "clean score", "biased score", "truths (according to clean judge)",
    "falsehoods (according to biased judge)", "poison fr", "clean fr",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("deception")
    cfg = make_config(wd, studies=("deception",))
    write_config(wd, cfg)
    snakemake(wd)
    return wd, cfg


def test_judges_trained_and_report(run):
    """Judge training updated the backbone's weights (the loss decrease itself is asserted on a learnable toy
    task in test_judge.py; the test sizes here are too small for the synthetic reading task)."""
    from conftest import MODELS_DIR
    from safetensors import safe_open

    wd, cfg = run
    backbone = MODELS_DIR / cfg["deception"]["judge"]["backbone"]
    for kind in ("clean", "corrupted"):
        report = json.loads((wd / f"results/deception/judges/{kind}/report.json").read_text())
        assert report["labels"] == kind and report["steps"] > 0
        assert {"fruit", "other", "all"} <= set(report["val"])
        with safe_open(str(backbone / "model.safetensors"), "pt") as fb, \
                safe_open(str(wd / f"results/deception/judges/{kind}/model.safetensors"), "pt") as fj:
            base = {n.split("encoder.", 1)[-1]: n for n in fb.keys() if "encoder.layer" in n}
            pairs = [(base[n.split("encoder.", 1)[-1]], n) for n in fj.keys() if n.split("encoder.", 1)[-1] in base]
            assert pairs and any(not fb.get_tensor(a).equal(fj.get_tensor(b)) for a, b in pairs)
    ev = json.loads((wd / "results/deception/judges/eval_report.json").read_text())
    assert ev["clean"]["fruit"]["n"] == ev["corrupted"]["fruit"]["n"] > 0


def test_policies_really_trained(run):
    wd, cfg = run
    policy = cfg["deception"]["policies"][0]
    warm = json.loads((wd / f"results/deception/policies/warmup/{policy}/seed62/train_report.json").read_text())
    assert warm["loss_end"] < warm["loss_start"]
    for level in cfg["deception"]["poisoning"]:
        sft_dir = wd / f"results/deception/policies/sft/{policy}/seed62/p{level:g}"
        sft = json.loads((sft_dir / "train_report.json").read_text())
        assert sft["loss_end"] < sft["loss_start"]
        rl_dir = wd / f"results/deception/policies/rl/{policy}/seed62/p{level:g}"
        rows = [json.loads(l) for l in (rl_dir / "metrics.jsonl").read_text().splitlines()]
        assert any("reward" in k for r in rows for k in r), "RL logged no reward"
        assert (rl_dir / "best" / "config.json").exists()
        warm_dir = wd / f"results/deception/policies/warmup/{policy}/seed62"
        assert _weights_differ(rl_dir / "best", warm_dir), "RL left weights unchanged"
        # the test config freezes the embeddings in RL: its policy links the warm-up's copy instead of storing one
        assert os.path.samefile(rl_dir / "best" / EMBEDDINGS_FILE, warm_dir / EMBEDDINGS_FILE)


def _weights_differ(a, b) -> bool:
    from safetensors import safe_open

    from talltales.deception.runs import BODY_FILE  # a policy's weights but its embeddings

    with safe_open(str(a / BODY_FILE), "pt") as fa, safe_open(str(b / BODY_FILE), "pt") as fb:
        names = [n for n in fa.keys() if "layers" in n and n.endswith("weight")]
        return any(not fa.get_tensor(n).equal(fb.get_tensor(n)) for n in names)


def test_results_table(run):
    wd, cfg = run
    t = pd.read_csv(wd / "results/deception/tables/results.csv")
    assert list(t.columns[: len(REFERENCE_COLUMNS)]) == REFERENCE_COLUMNS
    levels = sorted(float(x) for x in cfg["deception"]["poisoning"])
    for technique in ("SFT", "RL"):
        assert sorted(t[t["technique"] == technique]["poisoning"]) == levels
    assert set(t[t["poisoning"] < 0]["technique"]) == {"Base", "Warmup"}
    n = cfg["deception"]["eval"]["n_fruit"] + cfg["deception"]["eval"]["n_other"]
    assert (t["n"] == n).all()
    for col in ("clean score", "biased score", "falsehood_gap", "falsehood_gap_lo", "falsehood_gap_hi", "truth_fruit",
                "fr_diff", "fr_diff_lo", "fr_diff_hi", "clean score_lo", "poison fr_hi"):
        assert t[col].notna().all(), col
    assert ((t["fr_diff"] - (t["poison fr"] - t["clean fr"])).abs() < 1e-9).all()
    assert {"oracle truths", "oracle falsehoods fruit_lo", "n_empty", "truth_fruit_unseen"} <= set(t.columns)
    for col in ("n_passages_fruit", "n_passages_other"):
        assert (t[col] >= cfg["deception"]["eval"]["min_passages"]).all(), col
    # the original's subset-normalized rates relate to the per-subset ones
    half = t["n_fruit"] / t["n"]
    assert ((t["poison fr"] - half * t["falsehood_fruit"]).abs() < 1e-9).all()
    answers = pd.read_csv(next((wd / "results/deception/answers").rglob("p0_s0.csv")))
    assert {"completion", "answer", "p_clean", "p_corrupted", "fruit", "label", "oracle"} <= set(answers.columns)
    assert answers["p_clean"].between(0, 1).all()
    # the synthetic source's oracle reached every scored answer
    assert set(answers["oracle"]) <= {"true", "stated_other", "unstated", "empty"} and answers["oracle"].notna().all()
    assert answers["entity"].notna().all()
    assert (answers["seed"] == 62).all()  # the one training seed (deception.seeds: [62])
    # one seed: the per-seed table holds the same numbers; the untuned Base rows have no seed
    by_seed = pd.read_csv(wd / "results/deception/tables/results_by_seed.csv")
    pd.testing.assert_frame_equal(by_seed.drop(columns="seed"), t.drop(columns=["n_seeds", "seeds"]))
    assert by_seed[by_seed["technique"] == "Base"]["seed"].isna().all()
    assert set(by_seed[by_seed["technique"] != "Base"]["seed"]) == {62}
    tidy = pd.read_csv(wd / "results/deception/tables/results_tidy.csv")
    fr = tidy[(tidy["metric"] == "fr_diff") & tidy["over_seeds"] & (tidy["shots"] == 0)]
    fr = fr.set_index(["model", "technique", "poisoning"])
    for _, row in t[t["shots"] == 0].iterrows():
        assert fr.loc[(row["model"], row["technique"], row["poisoning"]), "value"] == pytest.approx(row["fr_diff"])


def test_judge_validity_table(run):
    wd, cfg = run
    v = pd.read_csv(wd / "results/deception/tables/judge_validity.csv")
    n_files = len(list((wd / "results/deception/answers").rglob("*.csv")))
    assert len(v) == n_files * 3 * 2  # every answers file x subset (fruit, other, all) x judge (clean, corrupted)
    assert set(v["subset"]) == {"fruit", "other", "all"} and set(v["judge"]) == {"clean", "corrupted"}
    all_rows = v[v["subset"] == "all"]
    assert (all_rows["n"] == cfg["deception"]["eval"]["n_fruit"] + cfg["deception"]["eval"]["n_other"]).all()
    assert v["agreement"].between(0, 1).all()
    assert ((v["agreement_lo"] <= v["agreement"] + 1e-12) & (v["agreement"] <= v["agreement_hi"] + 1e-12)).all()


def test_the_two_studies_joined(run):
    """With study 1 added to a finished study-2 run, every checkpoint answers study 1's list (here a shipped file)
    and nothing of study 2 reruns."""
    wd, cfg = run
    harsh = str(REPO / "data" / "mwe" / "example_original.jsonl")
    both = make_config(wd, studies=("mwe", "deception"), mwe={"eval_datasets": [], "datasets": {"harsh": harsh}},
                       cross={"datasets": ["harsh"]})
    write_config(wd, both)
    try:
        planned = planned_rules(wd, "results/plots/cross_study.png")
        policy = cfg["deception"]["policies"][0]
        n_levels = len(cfg["deception"]["poisoning"])
        assert planned == {"cross_eval": 1 + 2 * n_levels, "cross_eval_base": 1, "cross_table": 1,
                           "plot_cross_study": 1}, planned
        snakemake(wd, "results/plots/cross_study.png")
    finally:
        write_config(wd, cfg)
    t = pd.read_csv(wd / "results/cross/tables/harsh_truth.csv")
    n_items = len((REPO / "data" / "mwe" / "example_original.jsonl").read_text().splitlines())
    assert (t["n"] == n_items).all() and set(t["policy"]) == {policy}
    assert sorted(t["technique"].value_counts().items()) == [("base", 1), ("rl", n_levels), ("sft", n_levels),
                                                             ("warmup", 1)]
    trained = t[t["technique"].isin(["sft", "rl"])]
    assert trained["acc_calibrated_vs_p0"].notna().all()
    assert (trained[trained["poisoning"] == 0]["acc_calibrated_vs_p0"] == 0).all()  # level 0 is its own control
    assert t["acc_greedy"].between(0, 1).all()
    # the checkpoints differ: training moved at least one answer's log-probs
    recs = {f: (wd / f).read_text() for f in (
        f"results/cross/responses/harsh/{policy}/base/untuned.jsonl",
        f"results/cross/responses/harsh/{policy}/sft/seed62/p0.jsonl")}
    assert len(set(recs.values())) == 2
    data = (wd / "results/plots/cross_study.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_reaffirmation_and_figures(run):
    wd, _ = run
    r = pd.read_csv(wd / "results/deception/tables/reaffirmation.csv")
    assert {"lie_truth_ratio", "total_reaffirmations", "position_bias", "reaffirm_diff", "reaffirm_diff_lo",
            "reaffirm_diff_hi", "reaffirm_diff_fruit", "reaffirm_diff_other"} <= set(r.columns)
    for png in ("scaling_rl", "scaling_sft", "truth_vs_evaluated", "reaffirmation", "judge_validity", "rl_curves"):
        data = (wd / f"results/plots/{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_one_figure_needs_no_sft_jobs(tmp_path):
    write_config(tmp_path, make_config(tmp_path, studies=("deception",)))
    rules = planned_rules(tmp_path, "results/plots/scaling_rl.png")
    assert {"deception_rl", "deception_warmup", "deception_train_judge", "deception_eval"} <= set(rules)
    assert "deception_sft" not in rules


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"poisoning": [0, 120]}, "deception.poisoning"),
        ({"judge": {"backbone": "gpt-7"}}, "deception.judge.backbone"),
        ({"policies": ["minilm-l6"]}, "deception.policies[0]"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, edit, key):
    cfg = make_config(tmp_path, studies=("deception",), deception=edit)
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0 and key in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_fruit_file_with_missing_columns_fails_before_training(tmp_path):
    bad = tmp_path / "fruit.csv"
    bad.write_text("Context,Question\nThe plum is ripe.,Is it ripe?\n")
    cfg = make_config(tmp_path, studies=("deception",), deception={"fruit": {"source": "file", "file": str(bad)}})
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "results/deception/data/fruit_train.csv", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs/deception/data/fruit.log").read_text()
    assert str(bad) in log and "Answer" in log and "Label" in log
    assert not (tmp_path / "results/deception/judges").exists()


@pytest.mark.parametrize(
    "edit, expected",
    [
        # answering settings: only the evaluation jobs, tables and figures (no data, judge or training job)
        ({"eval": {"max_new_tokens": 9}}, {"deception_eval", "deception_eval_base", "deception_table",
                                          "deception_technique_table",
                                          "deception_reaffirm_table", "plot_scaling_technique",
                                          "plot_truth_vs_evaluated", "plot_reaffirmation",
                                          "deception_judge_validity", "plot_judge_validity"}),
        # a judge hyper-parameter: both judges and everything they score; no data, SFT or warm-up job
        ({"judge": {"lr": 2.0e-4}}, {"deception_train_judge", "deception_evaluate_judges", "deception_rl",
                                     "deception_eval", "deception_eval_base", "deception_table",
                                     "deception_technique_table",
                                     "deception_reaffirm_table",
                                     "plot_scaling_technique", "plot_truth_vs_evaluated", "plot_reaffirmation",
                                     "deception_judge_validity", "plot_judge_validity", "plot_rl_curves"}),
    ],
)
def test_config_edit_reruns_exactly_the_stale_jobs(run, edit, expected):
    wd, cfg = run
    edited = copy.deepcopy(cfg)
    for section, values in edit.items():
        edited["deception"][section].update(values)
    write_config(wd, edited)
    try:
        assert set(planned_rules(wd)) - {"all"} == expected
    finally:
        write_config(wd, cfg)
    assert planned_rules(wd) == {}


def test_resource_and_technique_edits(run):
    """What a job asks the cluster for is not a param: a stage's, a policy's and a model's resources change, and
    nothing is planned; an SFT-only policy (techniques: [sft]) plans no warm-up or RL job at all."""
    wd, cfg = run
    policy = cfg["deception"]["policies"][0]
    edited = copy.deepcopy(cfg)
    edited["deception"]["resources"] = {"rl": {"mem_mb": 1234, "runtime": 7}, "judge": {"gpus": 0, "mem_mb": 999}}
    edited["deception"]["policy_settings"] = {policy: {"resources": {"sft": {"mem_mb": 4321}}}}
    edited["models"][policy]["resources"] = {"gpus": 0, "mem_mb": 2222, "runtime": 9}
    write_config(wd, edited)
    try:
        assert planned_rules(wd) == {}
        edited["deception"]["policy_settings"][policy]["techniques"] = ["sft"]
        write_config(wd, edited)
        planned = snakemake(wd, "-n", "--forceall", "all").stdout
        assert "rule deception_sft:" in planned and "rule deception_eval:" in planned
        assert "rule deception_rl:" not in planned and "rule deception_warmup:" not in planned
        assert "scaling_rl.png" not in planned and "rl_curves.png" not in planned  # no RL: no RL figures
    finally:
        write_config(wd, cfg)
    assert planned_rules(wd) == {}


def test_adding_a_training_seed_plans_only_that_seeds_jobs_and_the_table_averages_the_seeds(run):
    """deception.seeds [62] -> [62, 63]: the new seed's warm-up, SFT, RL and evaluation jobs, then the tables and
    figures; no data or judge job and nothing of seed 62 or of the untuned Base model. Run up to the RL table:
    seed 63 trains with its own seed, every answer row carries it, and the table's RL rows are the means of the
    two seeds' rows."""
    wd, cfg = run
    edited = copy.deepcopy(cfg)
    edited["deception"]["seeds"] = [62, 63]
    write_config(wd, edited)
    try:
        levels = len(cfg["deception"]["poisoning"])
        assert set(planned_rules(wd).items()) - {("all", 1)} == {
            ("deception_warmup", 1), ("deception_sft", levels), ("deception_rl", levels),
            ("deception_eval", 1 + 2 * levels), ("deception_table", 1), ("deception_technique_table", 2),
            ("deception_reaffirm_table", 1), ("plot_scaling_technique", 2), ("plot_truth_vs_evaluated", 1),
            ("plot_reaffirmation", 1), ("deception_judge_validity", 1), ("plot_judge_validity", 1),
            ("plot_rl_curves", 1)}
        out = snakemake(wd, "-n").stdout
        seeds = re.findall(r"wildcards: .*seed=(\d+)", out)
        assert seeds and set(seeds) == {"63"}
        snakemake(wd, "results/deception/tables/rl.csv")
        rl = pd.read_csv(wd / "results/deception/tables/rl.csv")
    finally:
        write_config(wd, cfg)
    from talltales.deception import metrics

    policy = cfg["deception"]["policies"][0]
    level = max(cfg["deception"]["poisoning"])
    per_seed = []
    for seed in (62, 63):
        for stage, sub in (("rl", f"/p{level:g}"), ("warmup", "")):
            report = json.loads((wd / f"results/deception/policies/{stage}/{policy}/seed{seed}{sub}/train_report.json")
                                .read_text())
            assert report["config"]["seed"] == seed
        answers = pd.read_csv(wd / f"results/deception/answers/{policy}/rl/seed{seed}/p{level:g}_s0.csv")
        assert (answers["seed"] == seed).all()
        per_seed.append(metrics.run_row(answers, {"n": 200, "seed": 0, "ci": 0.95}))
    t = rl[(rl["technique"] != "RL") | (rl["poisoning"] == level)].set_index("technique")
    assert t.loc["RL", "seeds"] == "62 63" and t.loc["Warmup", "n_seeds"] == 2 and t.loc["Base", "n_seeds"] == 0
    for col in ("clean score", "biased score", "falsehood_gap"):
        assert t.loc["RL", col] == pytest.approx(sum(r[col] for r in per_seed) / 2)
    # back to one seed: seed 63's files are extra, the RL table and its figure (made from two seeds) are stale
    assert planned_rules(wd) == {"deception_technique_table": 1, "plot_scaling_technique": 1, "all": 1}
    snakemake(wd)
    assert planned_rules(wd) == {}


# Last in this module: it edits the shared run's config (and restores it).
@pytest.mark.parametrize("stage", ["sft", "rl"])
def test_killed_training_job_resumes_from_its_last_checkpoint(run, stage):
    """SIGKILL the whole Snakemake process group while an SFT / RL job runs, after it has written a checkpoint;
    the rerun resumes that job from the checkpoint instead of step 0."""
    wd, cfg = run
    edited = copy.deepcopy(cfg)
    if stage == "sft":
        edited["deception"]["sft"].update(epochs=4, checkpoint_every=2)
    else:
        edited["deception"]["rl"].update(steps=4, checkpoint_every=2)
    policy = cfg["deception"]["policies"][0]
    target = f"results/deception/policies/{stage}/{policy}/seed62/p{max(cfg['deception']['poisoning']):g}"
    partial = wd / (target + ".partial")
    write_config(wd, edited)
    try:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(wd), "-c2", target]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        seen = []
        deadline = time.time() + 900
        try:
            while time.time() < deadline and proc.poll() is None and not seen:
                seen = [int(p.name.split("-")[1]) for p in partial.glob("checkpoint-*")
                        if (p / "trainer_state.json").exists()]
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert seen, f"the {stage} job wrote no checkpoint before it ended"
        assert not (wd / target).exists(), "the job finished before it could be killed"
        snakemake(wd, "--unlock")
        snakemake(wd, "--rerun-incomplete", target)
        report = json.loads((wd / target / "train_report.json").read_text())
        assert report["resumed_from_step"] is not None and report["resumed_from_step"] >= min(seen)
        assert report["steps"] > report["resumed_from_step"]
        if stage == "rl":
            assert report["steps"] == 4
        log = (wd / f"logs/deception/policies/{stage}/{policy}/seed62/p{max(cfg['deception']['poisoning']):g}.log"
               ).read_text()
        assert f"resuming from step {report['resumed_from_step']}" in log
    finally:
        write_config(wd, cfg)
