from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import validity_plot

validity_plot.judge_validity(snakemake.input[0], snakemake.output[0])
