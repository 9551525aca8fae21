# talltales: two studies of how language-model untruthfulness scales with model size.
#   snakemake -c2                         everything in config.yaml (offline default: small real models)
#   snakemake results/plots/scaling_mwe.png   one figure and only what it needs
#   snakemake --profile profiles/slurm all    on a GPU cluster
# A study is its config section (talltales/schemas/config.schema.yaml), its rules/STUDY_*.smk files
# (STUDY_common.smk: its names, input functions and `all` targets; the others: its rules) and an include block.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"


if config.get("mwe"):

    include: "rules/mwe_common.smk"
    include: "rules/mwe.smk"
    include: "rules/mwe_plots.smk"


if config.get("deception"):

    include: "rules/deception_common.smk"
    include: "rules/deception_data.smk"
    include: "rules/deception_judges.smk"
    include: "rules/deception_policies.smk"
    include: "rules/deception_eval.smk"
    include: "rules/deception_plots.smk"
    include: "rules/deception_validity.smk"


if config.get("mwe") and config.get("deception") and config["cross"]["datasets"]:

    include: "rules/cross_common.smk"
    include: "rules/cross.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,


check_fault_injection([r.name for r in workflow.rules])


# An interrupted or failed cluster run leaves no job of its own in the queue (talltales/slurm.py).
onstart:
    talltales.slurm.cancel_on_interrupt(log, logger)


onerror:
    talltales.slurm.cancel_run(log, logger)
