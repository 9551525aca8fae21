from talltales.logs import start_job

start_job(snakemake)
from talltales import plots

plots.scaling_deception(snakemake.input[0], snakemake.output[0], snakemake.wildcards.technique)
