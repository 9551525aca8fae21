from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.warmup_data(
    mrc_train=snakemake.input.mrc_train,
    warmup_out=snakemake.output[0],
    warmup_size=snakemake.params.warmup_size,
    seed=snakemake.params.seed,
)
