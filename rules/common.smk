# Config validation, the model registry, and the named input/param functions every rule uses.
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import talltales.config as ttc

# JSON schema with defaults (filled into `config`), then the cross-reference checks; both before any job runs
validate(config, schema=str(ttc.SCHEMA_PATH))
try:
    ttc.check(config)
except ttc.ConfigError as _err:
    raise WorkflowError(f"invalid configuration: {_err}")

MODELS = config["models"]
MODELS_DIR = config["paths"]["models_dir"]
CACHE = config["paths"]["cache"]
MWE = config["mwe"]
EMBEDDED = [n for n, m in MODELS.items() if m.get("embedded")]
MWE_OWN = {"longlist", "shortlist", "shortlist_strict", "final", "final_strict"}
MWE_DATASETS = list(MWE["eval_datasets"]) + list(MWE["datasets"])


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    model=_alternatives(MODELS),
    dataset=_alternatives(MWE_OWN | set(MWE["datasets"])),


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
    return mwe_tables() + ["results/plots/scaling_mwe.png", "results/plots/bias_mwe.png"]
