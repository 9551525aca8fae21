# talltales: two studies of how language-model untruthfulness scales with model size.
#   snakemake -c2                         everything in config.yaml (offline default: small real models)
#   snakemake results/plots/scaling_mwe.png   one figure and only what it needs
#   snakemake --profile profiles/slurm all    on a GPU cluster
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


# jobs (also in conda envs and on cluster nodes) import the project's library from this checkout
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [workflow.basedir, os.environ.get("PYTHONPATH", "")] if p
)


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/mwe.smk"
include: "rules/plots.smk"


rule all:
    default_target: True
    input:
        all_targets(),
