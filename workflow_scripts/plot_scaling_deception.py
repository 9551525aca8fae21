from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales import plots

plots.scaling_deception(snakemake.input[0], snakemake.output[0], snakemake.wildcards.technique)
