from talltales.logs import start_job

start_job(snakemake)
from talltales import plots

plots.rl_curves(list(snakemake.input), snakemake.params.runs, snakemake.output[0], table_out=snakemake.output.table)
