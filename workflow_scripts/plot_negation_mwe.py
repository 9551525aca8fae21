from talltales.logs import start_job

start_job(snakemake)
from talltales import plots

plots.negation_mwe(snakemake.input, snakemake.output[0])
