# Study 1 (model-written "harsh truth" evals): its settings, file names, wildcard constraints, the input
# functions of rules/mwe*.smk, and its default targets.

from talltales.mwe.checks import OWN_DATASETS

MWE = config["mwe"]
# The pipeline's own lists (results/mwe/NAME.jsonl), evaluable like a file named in mwe.datasets.
MWE_OWN = set(OWN_DATASETS)
MWE_DATASETS = list(MWE["eval_datasets"]) + list(MWE["datasets"])
# Negated twins (mwe.negation): the datasets that get them, each scored as DATASET_neg like any dataset.
NEG = MWE["negation"]
NEGATED = list(NEG["datasets"])
NEG_GENERATOR = (NEG["generator"] or MWE["longlist"]["generator"]) if NEG["source"] == "lm" else None

MWE_LIST = "results/mwe/{dataset}.jsonl"
MWE_LABEL_CHECK = "results/mwe/label_check.jsonl"
MWE_RESPONSES = "results/mwe/responses/{dataset}/{model}.jsonl"
MWE_TABLE = "results/mwe/tables/{dataset}.csv"
MWE_TABLES = expand(MWE_TABLE, dataset=MWE_DATASETS)
MWE_SCALING_PLOT = "results/plots/scaling_mwe.png"
MWE_BIAS_PLOT = "results/plots/bias_mwe.png"
MWE_TWINS = "results/mwe/{dataset}_neg.jsonl"
# Answer formats (mwe.eval.formats): every evaluated dataset (or those of mwe.eval.format_datasets) scored again
# under each.
MWE_FORMATS = MWE["eval"]["formats"] or {}
MWE_FORMAT_DATASETS = MWE_DATASETS if MWE["eval"]["format_datasets"] is None else list(MWE["eval"]["format_datasets"])
MWE_FORMAT_RESPONSES = "results/mwe/formats/{answer_format}/{dataset}/{model}.jsonl"
MWE_FORMAT_TABLE = "results/mwe/tables/formats.csv"
MWE_FORMAT_PLOT = "results/plots/formats_mwe.png"
MWE_NEGATION_PLOT = "results/plots/negation_mwe.png"
ALL_TARGETS += MWE_TABLES + [MWE_SCALING_PLOT, MWE_BIAS_PLOT] + ([MWE_NEGATION_PLOT] if NEGATED else [])
ALL_TARGETS += [MWE_FORMAT_TABLE, MWE_FORMAT_PLOT] if MWE_FORMATS else []


wildcard_constraints:
    dataset=alternatives(MWE_OWN | set(MWE["datasets"]) | {f"{d}_neg" for d in NEGATED}),
    answer_format=alternatives(MWE_FORMATS),


def mwe_list(name):
    return MWE_LIST.format(dataset=name)


def mwe_dataset_file(wildcards):
    return mwe_dataset_path(wildcards.dataset)


def mwe_dataset_path(name):
    """An evaluation dataset: one of the pipeline's own lists, a file named in mwe.datasets, or the negated twins
    (NAME_neg) of one."""
    if name in MWE_OWN:
        return mwe_list(name)
    if name.endswith("_neg") and name[: -len("_neg")] in NEGATED:
        return MWE_TWINS.format(dataset=name[: -len("_neg")])
    return MWE["datasets"][name]


def mwe_negation_inputs(wildcards):
    """What writing the twins reads besides the dataset: the generator's files (source lm) or the twins file."""
    if NEG["source"] == "file":
        return [NEG["files"][wildcards.dataset]]
    return model_files(NEG_GENERATOR)


def mwe_twins(wildcards):
    """The twins of a dataset of mwe.negation.datasets (nothing for any other)."""
    return [MWE_TWINS.format(dataset=wildcards.dataset)] if wildcards.dataset in NEGATED else []


def mwe_twin_responses(wildcards):
    """Every eval model's responses on the dataset's twins, in mwe.eval_models order (nothing without twins)."""
    if wildcards.dataset not in NEGATED:
        return []
    return [MWE_RESPONSES.format(dataset=f"{wildcards.dataset}_neg", model=m) for m in MWE["eval_models"]]


def mwe_responses(wildcards):
    """Responses of every eval model on a dataset, in mwe.eval_models order."""
    return [MWE_RESPONSES.format(dataset=wildcards.dataset, model=m) for m in MWE["eval_models"]]


def mwe_eval_models(wildcards):
    """Registry entries of the eval models, in mwe.eval_models order (matches mwe_responses)."""
    return [model_entry(m) for m in MWE["eval_models"]]



def mwe_format(wildcards):
    """`params: answer_format` of a job scoring under answer format {answer_format}."""
    return {"name": wildcards.answer_format, "classes": MWE_FORMATS[wildcards.answer_format]["classes"],
            "study_classes": MWE["classes"]}


def mwe_format_body(wildcards):
    return MWE_FORMATS[wildcards.answer_format]["body"] or MWE["eval"]["body"]


def mwe_format_template(wildcards):
    return MWE_FORMATS[wildcards.answer_format]["template"]


# The responses of the formats table, as (dataset, format, model) keys and files in one order.
MWE_FORMAT_KEYS = [(d, f, m) for d in MWE_FORMAT_DATASETS for f in MWE_FORMATS for m in MWE["eval_models"]]
