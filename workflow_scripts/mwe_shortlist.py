from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.mwe import stages

stages.shortlists(
    snakemake.input[0], snakemake.output.shortlist, snakemake.output.strict, snakemake.params.thresholds
)
