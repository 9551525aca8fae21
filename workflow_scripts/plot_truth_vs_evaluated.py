from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales import plots

plots.truth_vs_evaluated(snakemake.input[0], snakemake.output[0])
