# talltales: two studies of how language-model untruthfulness scales with model size.
#   snakemake -c2                         everything in config.yaml (offline default: small real models)
#   snakemake results/plots/scaling_mwe.png   one figure and only what it needs
#   snakemake --profile profiles/slurm all    on a GPU cluster
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"


if config.get("mwe"):

    include: "rules/mwe.smk"
    include: "rules/plots.smk"


if config.get("deception"):

    include: "rules/multirc.smk"
    include: "rules/judges.smk"
    include: "rules/policies.smk"
    include: "rules/deception_eval.smk"
    include: "rules/deception_plots.smk"


rule all:
    default_target: True
    input:
        all_targets(),


check_fault_injection([r.name for r in workflow.rules])
