# Config validation, the model registry, and the named input/param functions every rule uses.
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import talltales.config as ttc

# JSON schema with defaults (filled into `config`), then the cross-reference checks; both before any job runs.
# talltales.config.validate also fills defaults behind $ref and runs the cross-reference checks.
# talltales' validator runs first: its messages name the dotted config key (e.g. deception.poisoning[1]).
try:
    ttc.validate(config)
except ttc.ConfigError as _err:
    raise WorkflowError(f"invalid configuration: {_err}")
validate(config, schema=str(ttc.SCHEMA_PATH))

MODELS = config["models"]
MODELS_DIR = config["paths"]["models_dir"]
CACHE = config["paths"]["cache"]
MWE = config.get("mwe")
EMBEDDED = [n for n, m in MODELS.items() if m.get("embedded")]
MWE_OWN = {"longlist", "shortlist", "shortlist_strict", "final", "final_strict"}
MWE_DATASETS = (list(MWE["eval_datasets"]) + list(MWE["datasets"])) if MWE else []


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    model=_alternatives(MODELS),
    dataset=_alternatives(MWE_OWN | set(MWE["datasets"] if MWE else [])),


def verbatim(value):
    """A param whose text may contain braces (prompt templates): a function of the wildcards keeps
    Snakemake from formatting it, and its value is still tracked for reruns."""

    def param(wildcards):
        return value

    return param


def model_files(name):
    """Files a stage using model NAME depends on: the materialized folder of an embedded model."""
    return [f"{MODELS_DIR}/{name}"] if name in EMBEDDED else []


def model_entry(name):
    """The registry entry of NAME (path resolved), passed as a param so edits rerun its stages."""
    return ttc.model_entry(config, name)


def eval_model_files(wildcards):
    return model_files(wildcards.model)


def eval_model_entry(wildcards):
    return model_entry(wildcards.model)


def embedded_package(wildcards):
    return MODELS[wildcards.model]["embedded"]


def mwe_dataset_file(wildcards):
    """An evaluation dataset: one of the pipeline's own lists, or a file named in mwe.datasets."""
    if wildcards.dataset in MWE_OWN:
        return f"results/mwe/{wildcards.dataset}.jsonl"
    return MWE["datasets"][wildcards.dataset]


def mwe_responses(wildcards):
    """Responses of every eval model on a dataset, in mwe.eval_models order."""
    return [f"results/mwe/responses/{wildcards.dataset}/{m}.jsonl" for m in MWE["eval_models"]]


def mwe_eval_models(wildcards):
    """Registry entries of the eval models, in mwe.eval_models order (matches mwe_responses)."""
    return [model_entry(m) for m in MWE["eval_models"]]


def mwe_tables():
    return expand("results/mwe/tables/{dataset}.csv", dataset=MWE_DATASETS)


def all_targets():
    mwe = mwe_tables() + ["results/plots/scaling_mwe.png", "results/plots/bias_mwe.png"] if MWE else []
    return mwe + deception_targets()


# ------------------------------------------------------------------ study 2 (Tall Tales)
DEC = config.get("deception")


def fmt_level(level):
    """A poisoning level as it appears in paths: 25 -> '25', 12.5 -> '12.5'."""
    return f"{level:g}"


if DEC:
    LEVELS = [fmt_level(x) for x in DEC["poisoning"]]
    POLICIES = list(DEC["policies"])
    JUDGE_BACKBONE = DEC["judge"]["backbone"]
    SHOTS = [str(s) for s in DEC["eval"]["shots"]]
    ANSWERABILITY = DEC["mrc"]["answerability"]["model"]
    FRUIT_GENERATOR = DEC["fruit"]["generator"] if DEC["fruit"]["source"] == "lm" else None
else:
    LEVELS, POLICIES, SHOTS = [], [], []


wildcard_constraints:
    level=_alternatives([re.escape(x) for x in LEVELS]) if DEC else "(?!x)x",
    policy=_alternatives(POLICIES),
    judge="clean|corrupted",
    technique="sft|rl",
    shots=_alternatives(SHOTS),


def stage_resources(stage):
    """resources: for a training stage from deception.resources (gpus, cpus_per_gpu, mem_mb, runtime, nodes);
    memory and runtime grow with the retry attempt."""
    res = dict(gpus=0, cpus_per_gpu=8, mem_mb=16000, runtime=120, nodes=1)
    res.update(DEC["resources"].get(stage, {}) if DEC else {})
    return res


# How training stages start their processes (talltales.deception.stages._launch): a param, so edits rerun them.
LAUNCH = {"mode": DEC.get("launch", "auto"), "accelerate_config": DEC.get("accelerate_config")} if DEC else {}


def multinode_resources(stage):
    """Extra resources: of a stage that spans nodes (deception.resources.STAGE.nodes > 1): one Slurm task per node
    and `mpi`, so the jobstep runs the rule unwrapped on the first node and the rule starts one
    `accelerate launch` per node itself with `srun` (talltales.deception.stages). Nothing for one node: the
    keys' mere presence would switch the Slurm plugin to MPI mode."""
    nodes = stage_resources(stage)["nodes"]
    return dict(nodes=nodes, tasks=nodes, mpi="srun") if nodes > 1 else {}


def res_gpu(stage):
    def value(wildcards, attempt):
        return stage_resources(stage)["gpus"]

    return value


def res_mem(stage):
    def value(wildcards, attempt):
        return stage_resources(stage)["mem_mb"] * attempt

    return value


def res_runtime(stage):
    def value(wildcards, attempt):
        return stage_resources(stage)["runtime"] * attempt

    return value


def res_cpus_per_gpu(stage):
    def value(wildcards, attempt):
        return stage_resources(stage)["cpus_per_gpu"]

    return value


def policy_files(wildcards):
    return model_files(wildcards.policy)


def policy_entry(wildcards):
    return model_entry(wildcards.policy)


def fruit_inputs(wildcards):
    if DEC["fruit"]["source"] == "file":
        return [DEC["fruit"]["file"]]
    return model_files(FRUIT_GENERATOR) if FRUIT_GENERATOR else []


def mrc_inputs(wildcards):
    files = model_files(JUDGE_BACKBONE)
    if DEC["mrc"]["source"] == "file":
        files += [DEC["mrc"]["train_file"], DEC["mrc"]["val_file"]]
    if ANSWERABILITY:
        files += model_files(ANSWERABILITY)
    return files


def eval_checkpoint(wildcards):
    """What an evaluation job loads: the registry model (Base rows), the warmed-up start point (Warmup rows) or
    an SFT/RL checkpoint (results/deception/policies/TECHNIQUE/MODEL/pLEVEL)."""
    t, run = wildcards.technique, wildcards.run
    if (t in ("base", "warmup")) != (run == "untuned"):
        raise WorkflowError(f"evaluation run {t}/{run}: base and warmup rows are 'untuned', sft/rl rows 'p<level>'")
    if t == "base":
        return model_files(wildcards.policy)
    if t == "warmup":
        return [f"results/deception/policies/warmup/{wildcards.policy}"]
    return [f"results/deception/policies/{t}/{wildcards.policy}/{run}"]


def eval_entry(wildcards):
    """The registry entry of the evaluated model, pointing at the checkpoint for trained rows."""
    entry = model_entry(wildcards.policy)
    if wildcards.technique != "base":
        entry = dict(entry, path=eval_checkpoint(wildcards)[0], embedded=None)
    return entry


def eval_level(wildcards):
    return None if wildcards.run == "untuned" else float(wildcards.run[1:])


def deception_answer_files(techniques=("sft", "rl"), untuned=("base", "warmup")):
    files = expand(
        "results/deception/answers/{policy}/{technique}/p{level}_s{shots}.csv",
        policy=POLICIES, technique=techniques, level=LEVELS, shots=SHOTS,
    )
    files += expand(
        "results/deception/answers/{policy}/{stage}/untuned_s{shots}.csv",
        policy=POLICIES, stage=untuned, shots=SHOTS,
    )
    return files


def deception_technique_answers(wildcards):
    return deception_answer_files(techniques=(wildcards.technique,))


def reaffirmation_files():
    files = expand(
        "results/deception/reaffirmation/{policy}/{technique}/p{level}.csv",
        policy=POLICIES, technique=("sft", "rl"), level=LEVELS,
    )
    files += expand("results/deception/reaffirmation/{policy}/{stage}/untuned.csv", policy=POLICIES, stage=("base", "warmup"))
    return files


def deception_targets():
    if not DEC:
        return []
    return [
        "results/deception/tables/results.csv",
        "results/deception/tables/reaffirmation.csv",
        "results/deception/judges/eval_report.json",
        "results/plots/scaling_rl.png",
        "results/plots/scaling_sft.png",
        "results/plots/truth_vs_evaluated.png",
        "results/plots/reaffirmation.png",
    ]


def level_value(wildcards):
    return float(wildcards.level)


def judge_dir(name):
    return f"results/deception/judges/{name}"


def check_fault_injection(rule_names):
    """config key fault_injection names rules of this workflow (a typo would silently inject nothing)."""
    unknown = sorted(set(config.get("fault_injection") or {}) - set(rule_names))
    if unknown:
        raise WorkflowError(f"invalid configuration: config key fault_injection: unknown rule(s) {', '.join(unknown)}; "
                            f"rules of this workflow: {', '.join(sorted(rule_names))}")
