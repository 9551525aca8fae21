from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.results_table(
    answers=list(snakemake.input), out=snakemake.output[0], models=snakemake.params.models, bootstrap=snakemake.params.bootstrap
)
