from talltales.logs import start_job

start_job(snakemake)
from talltales import plots

plots.formats_mwe(snakemake.input[0], snakemake.output[0])
