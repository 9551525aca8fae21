from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales import plots

plots.bias_mwe(snakemake.input, snakemake.output[0])
