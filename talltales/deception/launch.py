"""Launching a training stage (a policy's or a judge's): in this process (CPU or one GPU), through ``accelerate
launch`` (one process per GPU, a DeepSpeed config from ``envs/accelerate/``), or over the nodes of a Slurm job
(``srun`` starts one ``accelerate launch`` per node).

``python -m talltales.deception.launch {sft|rl|judge} --args-json FILE`` (:func:`main`) runs one from a JSON file of
arguments; it is the module that ``accelerate launch`` starts on every process. :func:`check_launch` checks a
stage's launch settings before anything is written and :func:`run_stage` runs the stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from talltales.io import read_table, write_json

log = logging.getLogger(__name__)

MODULE = "talltales.deception.launch"


def accelerate_command(script_args: Sequence[str], num_gpus: int,
                       config_file: str = "envs/accelerate/zero2.yaml", always: bool = False,
                       main_process_port: int | None = None) -> list[str]:
    """The command that runs ``python -m talltales.deception.launch *script_args``: through ``accelerate launch``
    with ``config_file`` and ``--num_processes num_gpus`` when ``num_gpus > 1`` (or ``always``), else plain python.
    ``main_process_port``: the rendezvous port (accelerate's default 29500 collides when two jobs share a node)."""
    if (num_gpus and num_gpus > 1) or always:
        port = ["--main_process_port", str(int(main_process_port))] if main_process_port else []
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                "--num_processes", str(max(1, int(num_gpus or 0))), *port, "-m", MODULE, *map(str, script_args)]
    return [sys.executable, "-m", MODULE, *map(str, script_args)]


def free_port() -> int:
    """A TCP port that is free on this host now (for a one-node launch's rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job_port(job_id: str | int, base: int = 29500, span: int = 10000) -> int:
    """A rendezvous port that every node of a Slurm job derives alike from its job id (jobs sharing the head
    node get different ports unless their ids differ by a multiple of ``span``)."""
    return base + int(job_id) % span


def multinode_command(script_args: Sequence[str], num_gpus: int, nodes: int, main_process_ip: str,
                      config_file: str = "envs/accelerate/zero2.yaml", main_process_port: int = 29500) -> list[str]:
    """For a Slurm job over ``nodes`` nodes (``num_gpus`` in all): ``srun`` starts one task per node, and each runs
    ``accelerate launch --num_machines nodes --machine_rank $SLURM_PROCID --main_process_ip HEAD`` with
    ``num_gpus`` processes in all (accelerate starts ``num_gpus / nodes`` on its node)."""
    if nodes < 2:
        raise ValueError(f"multinode_command needs at least 2 nodes, got {nodes}")
    if num_gpus % nodes:
        raise ValueError(f"{num_gpus} GPUs do not split evenly over {nodes} nodes (gpus is the total over the nodes)")
    launch = accelerate_command(script_args, num_gpus, config_file, always=True, main_process_port=main_process_port)
    i = launch.index("--num_processes")
    machine = ["--num_machines", str(nodes), "--machine_rank", "$SLURM_PROCID", "--main_process_ip", main_process_ip]
    launch = launch[:i + 2] + machine + launch[i + 2:]
    # $SLURM_PROCID is expanded by each task's shell (the task's rank = its node's rank); the rest is quoted
    shell = " ".join(a if a == "$SLURM_PROCID" else shlex.quote(a) for a in launch)
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "bash", "-c", shell]


def first_node(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[01-04]`` -> ``node01``), through ``scontrol show hostnames``."""
    import subprocess

    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    hosts = out.stdout.split()
    if not hosts:
        raise RuntimeError(f"scontrol show hostnames {nodelist!r} named no host")
    return hosts[0]


def check_launch(gpus: int, launch: dict | None, nodes: int = 1) -> str:
    """The launch mode, checked against the stage's GPU and node counts before anything is written."""
    mode = (launch or {}).get("mode", "auto")
    if nodes > 1 and not os.environ.get("SLURM_JOB_NODELIST"):
        raise ValueError(f"config key deception.resources.<stage>.nodes is {nodes}: a multi-node stage runs only as a "
                         "Slurm job (snakemake --profile profiles/slurm); set nodes: 1 to run it here")
    if nodes > 1 and (not gpus or gpus % nodes):
        raise ValueError(f"config key deception.resources.<stage>: gpus ({gpus}) must be a positive multiple of "
                         f"nodes ({nodes}): gpus is the total over the nodes")
    if mode not in ("auto", "accelerate"):
        raise ValueError(f"config key deception.launch: expected auto or accelerate, got {mode!r}")
    if mode == "accelerate" and not gpus:
        raise ValueError("config key deception.launch is 'accelerate', which needs at least one GPU, but this stage "
                         "gets none: set deception.resources.<stage>.gpus >= 1 or deception.launch: auto")
    return mode


def run_stage(mode: str, args: dict, out: str, gpus: int, launch: dict, how: str, nodes: int = 1) -> None:
    """Run ``python -m talltales.deception.launch MODE`` on a JSON of arguments: in this process on CPU or one GPU,
    through ``accelerate launch`` (one process per GPU, the DeepSpeed config ``launch["accelerate_config"]``) with
    more than one GPU or when the mode is ``accelerate``; over several nodes of a Slurm job, ``srun`` starts one
    ``accelerate launch`` per node (:func:`multinode_command`). ``how``: the launch mode as :func:`check_launch`
    returned it."""
    spec_path = Path(out).with_name(Path(out).name + f".{mode}-args.json")
    write_json(spec_path, args)
    script_args = [mode, "--args-json", str(spec_path)]
    config_file = launch.get("accelerate_config") or ""
    if nodes > 1:
        head = first_node(os.environ["SLURM_JOB_NODELIST"])
        port = job_port(os.environ.get("SLURM_JOB_ID", "0"))
        cmd = multinode_command(script_args, gpus, nodes, head, config_file, main_process_port=port)
    elif (gpus and gpus > 1) or how == "accelerate":
        # a free port: jobs that share a node (e.g. two 2-GPU jobs on an 8-GPU node) must not share 29500
        cmd = accelerate_command(script_args, gpus, config_file, always=True, main_process_port=free_port())
    else:
        cmd = None
    if cmd:
        run_command(cmd)
    else:
        main(script_args)
    spec_path.unlink(missing_ok=True)


def _child_stream(stream):
    """``stream`` flushed, when a child process can write to it (it has a file descriptor: the job's log file that
    talltales.logs.to_logfile made sys.stdout/sys.stderr), else None (the child inherits this process's own)."""
    try:
        stream.flush()
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return stream


def run_command(cmd: Sequence[str]) -> None:
    """Run ``cmd`` to its end (an error if it fails), its output going where this job's goes (the rule's log file,
    not the descriptors this process started with)."""
    import subprocess

    log.info("launching: %s", " ".join(cmd))
    subprocess.run(list(cmd), check=True, stdout=_child_stream(sys.stdout), stderr=_child_stream(sys.stderr))


def main(argv: list[str] | None = None) -> int:
    """``python -m talltales.deception.launch {sft|rl|judge} --args-json FILE``.

    sft JSON: ``policy_path``, ``data`` (demonstrations), ``config`` (SFTRunConfig fields), ``out_dir``.
    rl JSON: ``policy_path``, ``prompts``, ``eval_prompts``, ``judge_path``, ``config`` (RLRunConfig fields),
    ``out_dir``.
    judge JSON: ``backbone``, ``train``, ``val``, ``labels`` (clean | corrupted), ``config`` (JudgeConfig fields),
    ``out_dir``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("mode", choices=["sft", "rl", "judge"])
    parser.add_argument("--args-json", required=True)
    ns = parser.parse_args(argv)
    spec = json.loads(Path(ns.args_json).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ns.mode == "sft":
        from talltales.deception.settings import SFTRunConfig
        from talltales.deception.sft import sft

        sft(spec["policy_path"], read_table(spec["data"]), SFTRunConfig.from_dict(spec["config"]), spec["out_dir"])
    elif ns.mode == "judge":
        from talltales.deception.judge import JudgeConfig
        from talltales.deception.judge_training import train_judge

        train_judge(spec["backbone"], read_table(spec["train"]), read_table(spec["val"]), spec["labels"],
                    JudgeConfig.from_dict(spec["config"]), spec["out_dir"])
    else:
        from talltales.deception.judge import Judge
        from talltales.deception.rl import judge_reward_fn, rl
        from talltales.deception.settings import RLRunConfig

        judge = Judge.load(spec["judge_path"], device="auto", batch_size=32)
        rl(spec["policy_path"], read_table(spec["prompts"]), read_table(spec["eval_prompts"]), judge_reward_fn(judge),
           RLRunConfig.from_dict(spec["config"]), spec["out_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
