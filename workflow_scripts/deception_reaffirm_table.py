from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.reaffirm_table(scored=list(snakemake.input), out=snakemake.output[0], models=snakemake.params.models,
                     bootstrap=snakemake.params.bootstrap)
