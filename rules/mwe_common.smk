# Study 1 (model-written "harsh truth" evals): its settings, file names, wildcard constraints, the input
# functions of rules/mwe*.smk, and its default targets.

from talltales.mwe.checks import OWN_DATASETS

MWE = config["mwe"]
# The pipeline's own lists (results/mwe/NAME.jsonl), evaluable like a file named in mwe.datasets.
MWE_OWN = set(OWN_DATASETS)
MWE_DATASETS = list(MWE["eval_datasets"]) + list(MWE["datasets"])

MWE_LIST = "results/mwe/{dataset}.jsonl"
MWE_LABEL_CHECK = "results/mwe/label_check.jsonl"
MWE_RESPONSES = "results/mwe/responses/{dataset}/{model}.jsonl"
MWE_TABLE = "results/mwe/tables/{dataset}.csv"
MWE_TABLES = expand(MWE_TABLE, dataset=MWE_DATASETS)
MWE_SCALING_PLOT = "results/plots/scaling_mwe.png"
MWE_BIAS_PLOT = "results/plots/bias_mwe.png"
ALL_TARGETS += MWE_TABLES + [MWE_SCALING_PLOT, MWE_BIAS_PLOT]


wildcard_constraints:
    dataset=alternatives(MWE_OWN | set(MWE["datasets"])),


def mwe_list(name):
    return MWE_LIST.format(dataset=name)


def mwe_dataset_file(wildcards):
    """An evaluation dataset: one of the pipeline's own lists, or a file named in mwe.datasets."""
    if wildcards.dataset in MWE_OWN:
        return mwe_list(wildcards.dataset)
    return MWE["datasets"][wildcards.dataset]


def mwe_responses(wildcards):
    """Responses of every eval model on a dataset, in mwe.eval_models order."""
    return [MWE_RESPONSES.format(dataset=wildcards.dataset, model=m) for m in MWE["eval_models"]]


def mwe_eval_models(wildcards):
    """Registry entries of the eval models, in mwe.eval_models order (matches mwe_responses)."""
    return [model_entry(m) for m in MWE["eval_models"]]

