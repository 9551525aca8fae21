"""A real single-node Slurm cluster (tests/slurm/cluster.sh, fixture ``slurm_cluster``) and how the workflow's
Slurm executor plugin turns rule resources into sbatch requests on it. Trivial jobs (echo/hostname) and dry
runs only; tests/slurm/FINDINGS.md has the details."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import interruptible, REPO, SNAKEFILE, make_config, write_config

pytestmark = pytest.mark.slurm

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
FIELDS = ("JobID", "JobName", "Partition", "Account", "State", "Comment", "ReqTRES", "AllocTRES", "Timelimit")


def wait_done(cluster, *jobids: str, timeout: float = 120) -> None:
    """Until the jobs have left the queue."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = cluster.run("squeue", "-h", "-o", "%i", "-j", ",".join(jobids), check=False).stdout.split()
        if not set(out) & set(jobids):
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs {jobids} still queued after {timeout} s")


def sacct(cluster, *jobids: str, steps: bool = False) -> dict[str, dict[str, str]]:
    """sacct rows by JobID (allocations only unless ``steps``)."""
    cmd = ["sacct", "-n", "-P", "-j", ",".join(jobids), "--format=" + ",".join(FIELDS)]
    if not steps:
        cmd.insert(1, "-X")
    rows = {}
    for line in cluster.run(*cmd).stdout.splitlines():
        row = dict(zip(FIELDS, line.split("|")))
        rows[row["JobID"]] = row
    return rows


def accounted(cluster, *jobids: str, timeout: float = 30) -> dict[str, dict[str, str]]:
    """sacct rows once slurmdbd holds the finished jobs' full records (they arrive asynchronously: right after
    a job ends sacct may still show it as 'allocation' with no ReqTRES)."""
    end = time.monotonic() + timeout
    while True:
        rows = sacct(cluster, *jobids)
        if all(j in rows and rows[j]["State"].split()[0] in FINAL_STATES and rows[j]["ReqTRES"]
               and rows[j]["JobName"] != "allocation" for j in jobids):
            return rows
        if time.monotonic() > end:
            raise AssertionError(f"sacct has no complete record of {jobids} after {timeout} s: {rows}")
        time.sleep(0.5)


def tres(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def assert_sees_its_two_gpus(text: str) -> dict[str, str]:
    """``text`` holds ``CVD=$CUDA_VISIBLE_DEVICES JG=$SLURM_JOB_GPUS ...`` (in a job step ``$SLURM_STEP_GPUS``): the
    job sees two GPUs, and they are the ones Slurm allocated to it (not always 0,1: the lowest free ones when it
    started). The fields, by name."""
    fields = dict(item.split("=", 1) for item in text.split())
    assert len(set(fields["CVD"].split(","))) == 2 and fields["CVD"] == fields["JG"], text
    return fields


def sbatch(cluster, workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.run("sbatch", "--parsable", "-D", str(workdir), "-o", str(workdir / "%j.out"), *args, check=check)


# ------------------------------------------------------------------------------------------ the cluster


def test_partitions_and_fake_gpus(slurm_cluster):
    lines = slurm_cluster.run("sinfo", "-h", "-o", "%P|%a|%G|%T").stdout.split()
    parts = {line.split("|")[0]: line.split("|")[1:] for line in lines}
    assert set(parts) == {"cpu*", "gpu"}, parts  # cpu is the default partition
    for avail, gres, state in parts.values():
        assert avail == "up" and gres == f"gpu:{slurm_cluster.gpus}" and state in ("idle", "mixed", "allocated")


def test_batch_and_srun_jobs_run_and_are_accounted(slurm_cluster, tmp_path):
    jobid = sbatch(slurm_cluster, tmp_path, "--wrap", "hostname; echo batch-ok").stdout.strip().split(";")[0]
    step = slurm_cluster.run("srun", "-n1", "echo", "srun-ok")
    assert step.stdout.strip() == "srun-ok"
    wait_done(slurm_cluster, jobid)
    assert (tmp_path / f"{jobid}.out").read_text().splitlines()[-1] == "batch-ok"
    row = accounted(slurm_cluster, jobid)[jobid]
    assert (row["JobName"], row["State"], row["Partition"], row["Account"]) == (
        "wrap", "COMPLETED", "cpu", slurm_cluster.account)


@pytest.mark.parametrize("request_flag", ["--gres=gpu:2", "--gpus=2"])
def test_gpu_job_sees_its_gpus(slurm_cluster, tmp_path, request_flag):
    jobid = sbatch(slurm_cluster, tmp_path, "-p", "gpu", request_flag,
                   "--wrap", "echo CVD=$CUDA_VISIBLE_DEVICES JG=$SLURM_JOB_GPUS").stdout.strip().split(";")[0]
    wait_done(slurm_cluster, jobid)
    assert_sees_its_two_gpus((tmp_path / f"{jobid}.out").read_text())
    row = accounted(slurm_cluster, jobid)[jobid]
    assert tres(row["ReqTRES"])["gres/gpu"] == "2" and tres(row["AllocTRES"])["gres/gpu"] == "2"
    assert row["Partition"] == "gpu"


def test_more_gpus_than_the_node_has_is_rejected(slurm_cluster, tmp_path):
    proc = sbatch(slurm_cluster, tmp_path, "-p", "gpu", f"--gpus={slurm_cluster.gpus + 1}", "--wrap", "true",
                  check=False)
    assert proc.returncode != 0
    assert "Requested node configuration is not available" in proc.stderr


# ------------------------------------------------------------------------------- the Snakemake plugin

# Rules shaped like rules/deception_policies.smk (resource `gpu`, `cpus_per_gpu`, `mem_mb`, `runtime` from functions of the
# attempt; `tasks_per_gpu: 0` and the partition as the profile sets them), running only `echo`.
PROBE_SNAKEFILE = textwrap.dedent('''
    PROBE = ('echo "CVD=${{CUDA_VISIBLE_DEVICES:-}} JG=${{SLURM_STEP_GPUS:-${{SLURM_JOB_GPUS:-}}}} '
             'NTASKS=${{SLURM_NTASKS:-}} STEP=${{SLURM_STEP_ID:-}}" > {output}')

    rule all:
        input: "gpu_stage.txt", "cpu_stage.txt"

    rule gpu_stage:
        output: "gpu_stage.txt"
        threads: 2
        resources:
            gpu=lambda wc, attempt: 2,
            cpus_per_gpu=lambda wc, attempt: 1,
            mem_mb=lambda wc, attempt: 300 * attempt,
            runtime=lambda wc, attempt: 5 * attempt,
            tasks_per_gpu=0,
            slurm_partition="gpu",
        shell: PROBE

    rule cpu_stage:
        output: "cpu_stage.txt"
        threads: 1
        resources:
            mem_mb=200,
            runtime=5,
        shell: PROBE
''')

# The profile's GPU-stage rule names, for a run with profiles/slurm itself.
PROFILE_PROBE_SNAKEFILE = textwrap.dedent('''
    rule deception_warmup:
        output: "warmup.txt"
        threads: 2
        resources:
            gpu=lambda wc, attempt: 2,
            cpus_per_gpu=lambda wc, attempt: 2,
            mem_mb=lambda wc, attempt: 500 * attempt,
            runtime=lambda wc, attempt: 5 * attempt,
        shell: 'echo "CVD=${{CUDA_VISIBLE_DEVICES:-}} JG=${{SLURM_STEP_GPUS:-${{SLURM_JOB_GPUS:-}}}}" > {output}'
''')


def snakemake_on_slurm(cluster, workdir: Path, *args: str, timeout: int = 300) -> dict[str, str]:
    """Run Snakemake with the slurm executor in ``workdir``; the Slurm job id of each rule."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workdir / "Snakefile"), "--directory", str(workdir),
           "--slurm-init-seconds-before-status-checks", "1", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return dict((rule, jobid) for jobid, rule in
                re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", out))


@pytest.mark.slow
def test_plugin_requests_gpus_cpus_per_gpu_mem_runtime_partition(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(PROBE_SNAKEFILE)
    jobs = snakemake_on_slurm(slurm_cluster, tmp_path, "--executor", "slurm", "--jobs", "2", "--default-resources",
                              "slurm_partition=cpu", f"slurm_account={slurm_cluster.account}")
    assert set(jobs) == {"gpu_stage", "cpu_stage"}, jobs
    # One task that sees both GPUs: the jobstep runs the rule under `srun -n1 --gpus=2`, no task per GPU.
    gpu_fields = assert_sees_its_two_gpus((tmp_path / "gpu_stage.txt").read_text())
    assert (gpu_fields["NTASKS"], gpu_fields["STEP"]) == ("1", "0")
    assert (tmp_path / "cpu_stage.txt").read_text().split() == ["CVD=", "JG=", "NTASKS=1", "STEP=0"]
    rows = accounted(slurm_cluster, *jobs.values())
    gpu, cpu = rows[jobs["gpu_stage"]], rows[jobs["cpu_stage"]]
    assert gpu["Comment"] == "rule_gpu_stage" and gpu["Partition"] == "gpu" and gpu["Timelimit"] == "00:05:00"
    assert tres(gpu["ReqTRES"])["gres/gpu"] == "2" and tres(gpu["ReqTRES"])["mem"] == "300M"
    assert tres(gpu["AllocTRES"])["cpu"] == "2"  # cpus_per_gpu=1 x 2 GPUs (ReqTRES shows cpu=1 for --cpus-per-gpu)
    assert cpu["Partition"] == "cpu" and "gres/gpu" not in tres(cpu["ReqTRES"])
    assert tres(cpu["AllocTRES"])["cpu"] == "1" and tres(cpu["ReqTRES"])["mem"] == "200M"
    steps = [j for j in sacct(slurm_cluster, jobs["gpu_stage"], steps=True) if "." in j]
    assert sorted(steps) == [f"{jobs['gpu_stage']}.0", f"{jobs['gpu_stage']}.batch"]  # one srun step


@pytest.mark.slow
def test_repo_profile_gives_gpu_stages_cpus_per_gpu(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(PROFILE_PROBE_SNAKEFILE)
    jobs = snakemake_on_slurm(slurm_cluster, tmp_path, "--profile", str(REPO / "profiles" / "slurm"))
    assert_sees_its_two_gpus((tmp_path / "warmup.txt").read_text())
    row = accounted(slurm_cluster, jobs["deception_warmup"])[jobs["deception_warmup"]]
    assert row["Partition"] == "gpu" and tres(row["ReqTRES"])["gres/gpu"] == "2"
    assert tres(row["AllocTRES"])["cpu"] == "4"  # 2 GPUs x cpus_per_gpu 2


def test_repo_profile_parses_in_a_dry_run(slurm_cluster, tmp_path):
    """`snakemake --profile profiles/slurm -n` on the test config: the plugin accepts the profile and the GPU
    stages carry the partition and tasks_per_gpu it sets."""
    write_config(tmp_path, make_config(tmp_path, studies=("deception",)))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(tmp_path),
                           "--profile", str(REPO / "profiles" / "slurm"), "-n", "all"],
                          env=slurm_cluster.env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    blocks = re.findall(r"rule (\w+):\n(.*?)\n\n", out, re.S)
    resources = {rule: dict(re.findall(r"(\w+)=([^,\n]+)", m.group(1)))
                 for rule, body in blocks if (m := re.search(r"resources: (.*)", body))}
    for stage in ("deception_train_judge", "deception_warmup", "deception_sft", "deception_rl"):
        assert resources[stage]["slurm_partition"] == "gpu" and resources[stage]["tasks_per_gpu"] == "0", stage
        assert "gpu" in resources[stage] and "cpus_per_gpu" in resources[stage], stage
    assert resources["deception_judge_data"]["slurm_partition"] == "cpu"  # a CPU rule
    # an LM-data rule is on the gpu partition, with a GPU only where an LM writes or filters its items (none here)
    assert resources["deception_fruit"]["slurm_partition"] == "gpu" and "gpu" not in resources["deception_fruit"]
    assert resources["deception_eval"]["gpu"] == "1"  # an hf model's inference job: one GPU


# ---------------------------------------------------------------- cancel on interrupt (talltales/slurm.py)

# A process that, like the workflow's onstart handler, reads the run ID from a Snakemake log and installs the
# interrupt hook (logging through a handler like Snakemake's console handler: it writes under a non-reentrant lock
# and discards KeyboardInterrupt), then waits; with "swallow", the interrupt comes while that handler writes a line.
INTERRUPTED = textwrap.dedent('''
    import logging, sys, threading, time
    import talltales.slurm

    class LikeSnakemakes(logging.Handler):
        lock_ = threading.Lock()

        def emit(self, record):
            with self.lock_:
                print("in emit:", record.getMessage(), flush=True)
                try:
                    for _ in range(40):  # a slow write of a line
                        time.sleep(0.05)
                except KeyboardInterrupt:
                    pass

    logger = logging.getLogger("probe")
    logger.setLevel(logging.INFO)
    logger.addHandler(LikeSnakemakes())
    assert talltales.slurm.cancel_on_interrupt(sys.argv[1], logger) == sys.argv[2]
    if sys.argv[3] == "swallow":
        logger.warning("x")  # the interrupt lands in here
        print("emit returned", flush=True)
    elif sys.argv[3] == "thread":  # the kernel gives the interrupt to another thread, while the main thread waits
        import signal                # in a lock acquire that nothing else ends (Snakemake's scheduler with queued jobs)

        def hit():
            time.sleep(0.5)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            time.sleep(120)

        threading.Thread(target=hit, daemon=True).start()
        print("waiting", flush=True)
        threading.Event().wait()
    else:
        print("waiting", flush=True)  # the interrupt lands in the sleep
    time.sleep(120)
''')


@pytest.mark.parametrize("where", ["idle", "swallow", "thread"])
def test_an_interrupt_cancels_the_runs_queued_jobs_and_is_not_lost(slurm_cluster, tmp_path, where):
    """SIGINT to a process with the hook: the job named after the logged run ID (2 nodes: it stays pending on the
    1-node cluster) is cancelled, another job is not, and the process still ends with KeyboardInterrupt, also
    when the interrupt landed in a log handler that discards it and holds a lock the hook's own logging needs, and
    when it landed in another thread while the main thread waits on a lock (without the relay that one hangs)."""
    import signal
    import uuid

    rid = str(uuid.uuid4())
    pending = [sbatch(slurm_cluster, tmp_path, "-p", "gpu", "--nodes=2", f"--job-name={name}", "--wrap", "true")
               .stdout.strip().split(";")[0] for name in (rid, f"other-{rid}")]
    logfile = tmp_path / "run.snakemake.log"
    logfile.write_text(f"Building DAG of jobs...\nSLURM run ID: {rid}\n")
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(logfile), rid, where], env=slurm_cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        assert proc.stdout.readline().strip() == ("in emit: x" if where == "swallow" else "waiting")
        if where != "thread":  # there the process interrupts one of its own threads
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        other = slurm_cluster.run("squeue", "-h", "-o", "%T", "-j", pending[1]).stdout.strip()
    finally:
        proc.kill()
        slurm_cluster.run("scancel", pending[1])
    assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), (out, err)
    assert ("emit returned" in out) == (where == "swallow"), out
    assert f"in emit: Cancelled any job of Slurm run {rid} still queued or running." in out, out
    assert other == "PENDING"  # another run's job
    row = accounted(slurm_cluster, pending[0])[pending[0]]
    assert row["State"].startswith("CANCELLED") and row["JobName"] == rid, row
