from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

stages.shortlists(
    snakemake.input[0], snakemake.output.shortlist, snakemake.output.strict, snakemake.params.thresholds
)
