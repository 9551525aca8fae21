"""The workflow itself on the real single-node Slurm cluster (tests/slurm/cluster.sh): the test config's whole DAG,
both studies (study 1 on a shipped list, study 2 at one poisoning level: every rule of the DAG once), through
``profiles/slurm`` (with the test cluster's overrides), with an injected failure that is
retried with more memory and time, an injected failure that stops the run, and a rerun that resumes from the
finished artifacts.

The node's 8 GPUs are fake (character devices): jobs see CUDA_VISIBLE_DEVICES but torch has no CUDA, so the
training stages that ask for 2 GPUs run `accelerate launch --num_processes 2` with the multi-GPU launcher and a
test accelerate config (tests/slurm/accelerate_cpu_ddp.yaml) whose processes fall back to a gloo process group on
CPU: the train report's world size shows how many processes the job started.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import interruptible, REPO, SNAKEFILE, make_config, planned_rules, write_config
from talltales.faults import ENV
from test_slurm import accounted, sacct, tres

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Per training stage: GPUs (the node has 8 fake ones), CPUs per GPU, memory (MB) and time (minutes) of attempt 1.
RESOURCES = {
    "judge": {"gpus": 1, "cpus_per_gpu": 3, "mem_mb": 2100, "runtime": 21},
    "warmup": {"gpus": 1, "cpus_per_gpu": 2, "mem_mb": 2200, "runtime": 22},
    "sft": {"gpus": 2, "cpus_per_gpu": 1, "mem_mb": 2300, "runtime": 23},
    "rl": {"gpus": 2, "cpus_per_gpu": 2, "mem_mb": 2400, "runtime": 24},
}
STAGE_OF_RULE = {"deception_train_judge": "judge", "deception_warmup": "warmup", "deception_sft": "sft",
                 "deception_rl": "rl"}
# Jobs that load an hf model for inference: one GPU each (rules/common.smk: inference_resources), on the profile's
# gpu partition; one model's registry entry sizes its jobs (MODEL_RESOURCES).
INFERENCE_RULES = {"mwe_longlist", "mwe_label_check", "mwe_harsh_check", "mwe_eval", "deception_eval",
                   "deception_eval_base", "deception_evaluate_judges"}
MODEL_RESOURCES = {"gemma3-270m": {"mem_mb": 2600, "runtime": 26}}
LM_DATA_RULES = {"deception_mrc", "deception_fruit"}  # gpu partition; a GPU only where an LM filters or writes items
LOCAL_RULES = {"mwe_table", "plot_scaling_mwe", "plot_bias_mwe", "deception_table", "deception_technique_table",
               "deception_reaffirm_table", "plot_scaling_technique", "plot_truth_vs_evaluated", "plot_reaffirmation",
               "deception_judge_validity", "plot_judge_validity", "plot_rl_curves"}
# Injected failures: the corrupted judge fails once (the profile's one retry, with doubled memory and time, passes);
# RL at 100 % fails on both attempts, so the first run stops; the rerun finds the failures spent.
FAULTS = {"deception_train_judge": {"times": 1, "wildcards": {"judge": "corrupted"}},
          "deception_rl": {"times": 2, "wildcards": {"level": 100}}}
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/(?:([^/\s]+)/)?\d+\.log\)")


def slurm_test_profile(cluster, folder: Path) -> Path:
    """profiles/slurm with this cluster's overrides: its account, shorter status polling, and at most 3 jobs at
    once on the 2-core machine. The partitions keep the profile's names (the test cluster has `cpu` and `gpu`)."""
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    prof["default-resources"] = {**prof["default-resources"], "slurm_account": cluster.account}
    prof.update({"jobs": 3, "latency-wait": 10, "slurm-init-seconds-before-status-checks": 1,
                 "seconds-between-status-checks": 2})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return folder


def run_on_slurm(cluster, workdir: Path, profile: Path, *args: str,
                 faults: dict | None = None) -> tuple[int, str, list[tuple[str, str, str]]]:
    """Snakemake with the profile, ``faults`` in TALLTALES_FAULTS (which sbatch passes on to the jobs: the plugin
    submits with --export=ALL); (exit status, output, [(Slurm job id, rule, wildcards)] in submission order)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
           "--profile", str(profile), *args]
    env = {**cluster.env, **({ENV: json.dumps(faults)} if faults else {})}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=2400)
    out = proc.stdout + proc.stderr
    return proc.returncode, out, SUBMITTED.findall(out)


def final_rows(cluster, jobids, timeout: float = 60) -> dict[str, dict[str, str]]:
    return accounted(cluster, *jobids, timeout=timeout)


@pytest.fixture(scope="module")
def dag(slurm_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_dag")
    # For the suite's time: study 1 scores a shipped list (the Slurm requests of its LM stages, which share
    # mwe_eval's inference_resources, are checked by the presets' dry runs in tests/test_presets.py), and study 2
    # trains at level 100 alone.
    example = str(REPO / "data" / "mwe" / "example_original.jsonl")
    cfg = make_config(workdir, studies=("mwe", "deception"), mwe={"eval_datasets": [], "datasets": {"example": example}},
                      deception={
                          "poisoning": [100],
                          "resources": RESOURCES,
                          "rl": {"engine": "trl"},  # RL over 2 GPUs: trl's trainer under accelerate launch
                          "accelerate_config": str(REPO / "tests" / "slurm" / "accelerate_cpu_ddp.yaml"),
                      })
    for name, res in MODEL_RESOURCES.items():
        cfg["models"][name]["resources"] = res
    write_config(workdir, cfg)
    planned = planned_rules(workdir, "all")
    profile = slurm_test_profile(slurm_cluster, workdir / "profile")
    t0 = time.monotonic()
    rc1, out1, jobs1 = run_on_slurm(slurm_cluster, workdir, profile, "all", faults=FAULTS)
    rc2, out2, jobs2 = run_on_slurm(slurm_cluster, workdir, profile, "all", faults=FAULTS)
    (workdir / "run1.out").write_text(out1)  # for a look after a failure
    (workdir / "run2.out").write_text(out2)
    rows = final_rows(slurm_cluster, [j for j, _, _ in jobs1 + jobs2])
    steps = sacct(slurm_cluster, *[j for j, _, _ in jobs1 + jobs2], steps=True)
    return dict(workdir=workdir, planned=planned, levels=cfg["deception"]["poisoning"], rc1=rc1, out1=out1,
                jobs1=jobs1, rc2=rc2, out2=out2, jobs2=jobs2, rows=rows, steps=steps, seconds=time.monotonic() - t0)


def test_first_run_stops_at_the_failed_job_and_the_rerun_completes(dag):
    assert dag["rc1"] != 0, dag["out1"][-3000:]
    # reported failed, with the rule log's reason (the profile's show-failed-logs); the rerun replaced that log
    assert re.search(r"Error in rule deception_rl:", dag["out1"]), dag["out1"][-3000:]
    assert "fault_injection.deception_rl: injected failure 2 of 2" in dag["out1"], dag["out1"][-3000:]
    assert dag["rc2"] == 0, dag["out2"][-6000:]
    assert (dag["workdir"] / "results" / "plots" / "scaling_rl.png").exists()
    assert (dag["workdir"] / "results" / "deception" / "tables" / "results.csv").exists()


def test_every_non_local_job_ran_as_its_own_slurm_job_and_local_rules_did_not(dag):
    runs = dag["jobs1"] + dag["jobs2"]
    done = [(rule, wc) for jobid, rule, wc in runs if dag["rows"][jobid]["State"] == "COMPLETED"]
    expected = {rule: n for rule, n in dag["planned"].items() if rule not in LOCAL_RULES and rule != "all"}
    assert collections.Counter(rule for rule, _ in done) == collections.Counter(expected), (done, expected)
    assert len(set(done)) == len(done)  # no job completed twice
    assert not {rule for _, rule, _ in runs} & LOCAL_RULES
    assert LOCAL_RULES <= set(dag["planned"])  # ... and they were part of the DAG (they ran on the submit host)
    for jobid, rule, _ in runs:
        assert dag["rows"][jobid]["Comment"].startswith(f"rule_{rule}"), (jobid, rule, dag["rows"][jobid])


def test_the_rerun_resubmits_no_finished_job(dag):
    first_done = {(rule, wc) for jobid, rule, wc in dag["jobs1"] if dag["rows"][jobid]["State"] == "COMPLETED"}
    second = {(rule, wc) for _, rule, wc in dag["jobs2"]}
    assert first_done and second and not first_done & second
    assert ("deception_rl", "smollm2-135m-instruct_62_100") in second
    # the failed job: two attempts in the first run, both FAILED in sacct, the second with doubled memory and time
    failed = [j for j, r, w in dag["jobs1"] if r == "deception_rl" and w.endswith("100")]
    assert len(failed) == 2 and all(dag["rows"][j]["State"].startswith("FAILED") for j in failed)
    mems = [tres(dag["rows"][j]["ReqTRES"])["mem"] for j in failed]
    assert mems == [f"{RESOURCES['rl']['mem_mb']}M", f"{2 * RESOURCES['rl']['mem_mb']}M"]
    assert [dag["rows"][j]["Timelimit"] for j in failed] == ["00:24:00", "00:48:00"]


def test_a_failure_within_the_retries_is_resubmitted_with_grown_memory_and_time(dag):
    jobs = [j for j, r, w in dag["jobs1"] if r == "deception_train_judge" and w == "corrupted"]
    assert len(jobs) == 2, dag["jobs1"]
    first, second = (dag["rows"][j] for j in jobs)
    assert first["State"].startswith("FAILED") and second["State"] == "COMPLETED"
    mem = RESOURCES["judge"]["mem_mb"]
    assert tres(first["ReqTRES"])["mem"] == f"{mem}M" and tres(second["ReqTRES"])["mem"] == f"{2 * mem}M"
    assert (first["Timelimit"], second["Timelimit"]) == ("00:21:00", "00:42:00")
    clean = [j for j, r, w in dag["jobs1"] + dag["jobs2"] if r == "deception_train_judge" and w == "clean"]  # either run
    assert len(clean) == 1 and dag["rows"][clean[0]]["State"] == "COMPLETED"
    assert tres(dag["rows"][clean[0]]["ReqTRES"])["mem"] == f"{mem}M"


def retried_jobs(dag) -> set[str]:
    """The resubmissions (attempt 2) of the first run: the second job of a rule and wildcards."""
    seen, retried = set(), set()
    for jobid, rule, wc in dag["jobs1"]:
        (retried.add(jobid) if (rule, wc) in seen else seen.add((rule, wc)))
    return retried


def test_gpu_rules_request_what_config_and_profile_declare(dag):
    retried, sized = retried_jobs(dag), set()
    assert len(retried) == 2  # the judge's and RL's second attempts
    for jobid, rule, wc in dag["jobs1"] + dag["jobs2"]:
        row = dag["rows"][jobid]
        req, alloc = tres(row["ReqTRES"]), tres(row["AllocTRES"])
        if rule in STAGE_OF_RULE:
            res, attempt = RESOURCES[STAGE_OF_RULE[rule]], 2 if jobid in retried else 1
            assert row["Partition"] == "gpu", (rule, row)
            assert req["gres/gpu"] == str(res["gpus"]), (rule, row)
            assert req["mem"] == f"{res['mem_mb'] * attempt}M", (rule, wc, row)
            assert row["Timelimit"] == f"00:{res['runtime'] * attempt:02d}:00", (rule, wc, row)
            assert alloc["cpu"] == str(res["gpus"] * res["cpus_per_gpu"]), (rule, row)
        elif rule in INFERENCE_RULES:
            assert row["Partition"] == "gpu" and req["gres/gpu"] == "1", (rule, row)
            model = wc.rsplit("_", 1)[-1]  # mwe_eval's wildcards: {dataset}_{model}
            if rule == "mwe_eval" and model in MODEL_RESOURCES:
                res = MODEL_RESOURCES[model]
                assert req["mem"] == f"{res['mem_mb']}M" and row["Timelimit"] == f"00:{res['runtime']}:00", row
                sized.add(jobid)
        elif rule in LM_DATA_RULES:  # the test config sets no such LM
            assert row["Partition"] == "gpu" and "gres/gpu" not in req, (rule, row)
        else:
            assert row["Partition"] == "cpu" and "gres/gpu" not in req, (rule, row)
    assert len(sized) == 1  # gemma3-270m's mwe_eval job (the shipped list) asked for its registry entry's resources


def test_multi_gpu_stages_start_one_accelerate_launch_with_one_process_per_gpu(dag):
    workdir = dag["workdir"]
    for rule, stage in (("deception_sft", "sft"), ("deception_rl", "rl")):
        jobs = [(j, w) for j, r, w in dag["jobs1"] + dag["jobs2"] if r == rule and dag["rows"][j]["State"] == "COMPLETED"]
        assert jobs, rule
        for jobid, wc in jobs:
            # one srun step: the jobstep ran the rule once (not once per GPU) ...
            assert sorted(s for s in dag["steps"] if s.startswith(jobid + ".")) == [f"{jobid}.0", f"{jobid}.batch"]
        policy = "smollm2-135m-instruct"
        for level in dag["levels"]:
            log = (workdir / "logs" / "deception" / "policies" / stage / policy / "seed62" / f"p{level}.log").read_text()
            # ... which started accelerate launch with one process per GPU ...
            launches = re.findall(r"launching: .*accelerate\.commands\.launch .*--num_processes (\d+) ", log)
            assert launches and set(launches) == {str(RESOURCES[stage]["gpus"])}, log[-2000:]
            report = json.loads((workdir / "results" / "deception" / "policies" / stage / policy / "seed62" / f"p{level}"
                                 / "train_report.json").read_text())
            # ... and the training ran in that many processes
            assert report["world_size"] == RESOURCES[stage]["gpus"] and report["distributed_type"] == "MULTI_CPU"
    warm = json.loads((workdir / "results" / "deception" / "policies" / "warmup" / "smollm2-135m-instruct"
                       / "seed62" / "train_report.json").read_text())
    assert warm["world_size"] == 1  # one GPU: in-process, no launcher


def test_gpu_request_scales_from_config(dag, slurm_cluster):
    """deception.resources.rl.gpus: 8 gives an 8-GPU request (the node has 8 fake GPUs). The job is made to fail
    at its start (TALLTALES_FAULTS, no retry) so that only the request is exercised. (Runs after the DAG checks:
    forcing the job removes its RL output.)"""
    workdir = dag["workdir"]
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["deception"]["resources"]["rl"] = {**RESOURCES["rl"], "gpus": 8, "cpus_per_gpu": 1}
    write_config(workdir, cfg)
    rc, out, jobs = run_on_slurm(slurm_cluster, workdir, workdir / "profile", "--retries", "0", "-f",
                                 "results/deception/policies/rl/smollm2-135m-instruct/seed62/p100",
                                 faults={"deception_rl": {"times": 1, "wildcards": {"level": 100}}})
    assert rc != 0 and [(r, w) for _, r, w in jobs] == [("deception_rl", "smollm2-135m-instruct_62_100")], out[-3000:]
    row = accounted(slurm_cluster, jobs[0][0])[jobs[0][0]]
    assert row["State"].startswith("FAILED") and row["Partition"] == "gpu", row
    assert tres(row["ReqTRES"])["gres/gpu"] == "8" and tres(row["AllocTRES"])["gres/gpu"] == "8", row
    assert tres(row["AllocTRES"])["cpu"] == "8" and tres(row["ReqTRES"])["mem"] == f"{RESOURCES['rl']['mem_mb']}M"


def test_two_node_rl_request_is_submitted_as_mpi_job_then_cancelled(slurm_cluster, tmp_path):
    """RL over 2 nodes (deception.resources.rl.nodes: 2): the plugin asks for 2 nodes with one task each and no
    srun wrapper (mpi), the GPUs in all; the one-node test cluster leaves it pending, and interrupting Snakemake
    cancels it, even in the middle of a status query (when the plugin's own list of jobs to cancel is empty): the
    workflow's onstart handler made SIGINT cancel the run's jobs by name at once (talltales/slurm.py), not only
    once Snakemake's shutdown has waited out the plugin's status interval. Only this one job runs: its inputs are
    placeholders (it never starts) and --allowed-rules keeps their rules out of the DAG."""
    import queue
    import signal
    import threading

    workdir = tmp_path / "two_node"
    cfg = make_config(workdir, studies=("deception",), deception={
        "resources": {**RESOURCES, "rl": {**RESOURCES["rl"], "nodes": 2}},
        "rl": {"engine": "trl"},
        "accelerate_config": str(REPO / "tests" / "slurm" / "accelerate_cpu_ddp.yaml"),
    })
    write_config(workdir, cfg)
    for folder in ("results/deception/policies/warmup/smollm2-135m-instruct/seed62", "results/deception/judges/corrupted",
                   "results/deception/data"):
        (workdir / folder).mkdir(parents=True)
    for name in ("rl_prompts_p100.csv", "rl_eval_p100.csv"):
        (workdir / "results/deception/data" / name).write_text("placeholder\n")
    profile = slurm_test_profile(slurm_cluster, workdir / "profile")
    target = "results/deception/policies/rl/smollm2-135m-instruct/seed62/p100"
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
                             "--profile", str(profile), "--verbose", "--allowed-rules", "deception_rl", "-f", target],
                            cwd=workdir, env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=interruptible)
    lines: queue.Queue = queue.Queue()  # Snakemake's output, read as it comes
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
    seen: list[str] = []

    def next_line(timeout: float = 120) -> str:
        line = lines.get(timeout=timeout)
        assert line is not None, "Snakemake exited:\n" + "".join(seen)[-4000:]
        seen.append(line)
        return line

    jobid = None
    try:
        while not (m := SUBMITTED.search(next_line())):
            pass
        jobid = m.group(1)
        sbatch_call = next(x for x in seen if "sbatch call:" in x)
        for flag in ("--nodes=2", "--ntasks=2", "--gpus=2", f"--cpus-per-gpu={RESOURCES['rl']['cpus_per_gpu']}",
                     "-p gpu"):
            assert flag in sbatch_call, sbatch_call
        assert "--ntasks-per-gpu" not in sbatch_call
        deadline = time.monotonic() + 60
        while True:
            info = slurm_cluster.run("scontrol", "show", "job", jobid).stdout
            if "JobState=PENDING" in info and "Reason=PartitionNodeLimit" in info:
                break
            assert time.monotonic() < deadline, info
            time.sleep(1)
        assert re.search(r"NumNodes=2\b", info) and re.search(r"NumTasks=2\b", info), info
        while not lines.empty():  # what came while we looked: the interrupt goes with the next status query
            next_line()
        while "Checking the status of 1 active jobs" not in next_line():
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=200)  # Snakemake ends after the plugin's status interval (at most 180 s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert jobid, "".join(seen)[-4000:]
    while (line := lines.get(timeout=30)) is not None:  # the rest of Snakemake's output
        seen.append(line)
    out = "".join(seen)
    rid = re.search(r"SLURM run ID: (\S+)", out).group(1)
    submitted = out.index(f"SLURM jobid {jobid} ")
    # the interrupt hook cancelled the run's jobs before Snakemake's own handling of the interrupt began
    assert re.search(rf"Interrupted: cancelling the jobs of Slurm run {rid}\.\n(.*\n)*?Cancelled any job of Slurm "
                     rf"run {rid} still queued or running\.\n(.*\n)*?Terminating processes on user request",
                     out[submitted:]), out[-4000:]
    assert proc.returncode == 1, out[-4000:]  # Snakemake's end of an interrupted run (it was not killed)
    row = accounted(slurm_cluster, jobid, timeout=60)[jobid]
    assert row["State"].startswith("CANCELLED") and row["JobName"] == rid, row
    assert tres(row["ReqTRES"])["node"] == "2" and tres(row["ReqTRES"])["gres/gpu"] == "2", row
