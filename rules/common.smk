# What every study uses: config validation, the model registry, the resources of a training stage, and the
# list of default targets. A study's own names, paths and input functions live in rules/STUDY_common.smk.
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

import talltales.config as ttc
import talltales.lm.spend
import talltales.faults as faults
import talltales.slurm

# JSON schema with defaults (filled into `config`), then the cross-reference checks; both before any job runs.
# talltales.config.validate also fills defaults behind $ref and runs the cross-reference checks.
# talltales' validator runs first: its messages name the dotted config key (e.g. deception.poisoning[1]).
try:
    ttc.validate(config)
except ttc.ConfigError as _err:
    raise WorkflowError(f"invalid configuration: {_err}")
validate(config, schema=str(ttc.SCHEMA_PATH))

# The spending cap of paid API requests reaches the backends through the environment, set here in the main process
# and in every job from the config it runs with: in no job's params, so raising it after a stop reruns only the
# jobs that did not finish (the ledger of what was spent: spending.ledger, outside the DAG like the cache).
talltales.lm.spend.publish_cap(config.get("spending"))

MODELS = config["models"]
MODELS_DIR = config["paths"]["models_dir"]
CACHE = config["paths"]["cache"]
EMBEDDED = [n for n, m in MODELS.items() if m.get("embedded")]

# The files `snakemake all` builds: each rules/STUDY_common.smk adds its own.
ALL_TARGETS = []


def alternatives(names):
    """A wildcard constraint matching exactly the strings NAMES (nothing when there are none)."""
    return "|".join(re.escape(str(n)) for n in names) if names else "(?!x)x"


wildcard_constraints:
    model=alternatives(MODELS),


def verbatim(value):
    """A param whose text may contain braces (prompt templates): a function of the wildcards keeps
    Snakemake from formatting it, and its value is still tracked for reruns."""

    def param(wildcards):
        return value

    return param


def model_files(name):
    """Files a stage using model NAME depends on: the materialized folder of an embedded model."""
    return [f"{MODELS_DIR}/{name}"] if name in EMBEDDED else []


def files_of(wildcard):
    """An input function: the model_files of the model that WILDCARD names."""
    return lambda wildcards: model_files(wildcards[wildcard])


def entry_of(wildcard):
    """A params function: the registry entry of the model that WILDCARD names."""
    return lambda wildcards: model_entry(wildcards[wildcard])


def embedded_package(wildcards):
    return MODELS[wildcards.model]["embedded"]


def model_entry(name):
    """The registry entry of NAME (path resolved), passed as a param so edits rerun its stages."""
    return ttc.model_entry(config, name)


# Training stages without a `resources:` entry in the config get these (the schema's defaults of one).
STAGE_RESOURCES = dict(gpus=0, cpus_per_gpu=8, mem_mb=16000, runtime=120, nodes=1)


def _grown(value_of, key):
    """A resource that grows with the retry attempt: VALUE_OF(wildcards)[KEY] x attempt."""

    def value(wildcards, attempt):
        return value_of(wildcards)[key] * attempt

    return value


def stage_resources(spec, per_job=None, multinode=True):
    """`resources:` of a training stage from its config entry SPEC (gpus, cpus_per_gpu, mem_mb, runtime, nodes),
    with PER_JOB(wildcards) over it where given (one policy's entry, without nodes): memory and runtime grow with
    the retry attempt. A stage over several nodes (nodes > 1, and MULTINODE) also gets one Slurm task per node
    and `mpi`, so the jobstep runs the rule unwrapped on the first node and the rule starts one `accelerate
    launch` per node itself with `srun` (talltales.deception.stages); nothing for one node: the keys' mere
    presence would switch the Slurm plugin to MPI mode."""
    base = dict(STAGE_RESOURCES, **{k: v for k, v in spec.items() if v is not None})

    def res(wildcards):
        over = per_job(wildcards) if per_job else {}
        return dict(base, **{k: v for k, v in over.items() if v is not None})

    out = dict(gpu=lambda wildcards: res(wildcards)["gpus"],
               cpus_per_gpu=lambda wildcards: res(wildcards)["cpus_per_gpu"],
               mem_mb=_grown(res, "mem_mb"), runtime=_grown(res, "runtime"))
    if multinode and base["nodes"] > 1:
        out.update(nodes=base["nodes"], tasks=base["nodes"], mpi="srun")
    return out


# Inference jobs (generation, checks, scoring, evaluation) of a registry model without a `resources:` entry.
INFERENCE_RESOURCES = dict(gpus=0, mem_mb=6000, runtime=60)


def inference_resources(model=None, wildcard=None, hf_gpus=0, **defaults):
    """`resources:` of a job that loads registry model MODEL (or the one wildcard WILDCARD names) for inference:
    the rule's defaults (INFERENCE_RESOURCES, DEFAULTS, HF_GPUS GPUs for an hf model) with the model's
    `models.NAME.resources` over them; memory and runtime grow with the retry attempt."""

    def res(wildcards):
        name = model if model is not None else wildcards[wildcard]
        entry = config["models"][name]
        out = dict(INFERENCE_RESOURCES, gpus=hf_gpus if entry["backend"] == "hf" else 0, **defaults)
        out.update({k: v for k, v in (entry.get("resources") or {}).items() if v is not None})
        return out

    return dict(gpu=lambda wildcards: res(wildcards)["gpus"], mem_mb=_grown(res, "mem_mb"),
                runtime=_grown(res, "runtime"))


def check_fault_injection(rule_names):
    """The test hook TALLTALES_FAULTS (talltales.faults) names rules of this workflow."""
    try:
        faults.check_rules(faults.load_spec(), rule_names)
    except faults.FaultSpecError as err:
        raise WorkflowError(f"invalid test hook: {err}")

