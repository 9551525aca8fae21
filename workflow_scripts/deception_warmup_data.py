from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.warmup_data(
    mrc_train=snakemake.input.mrc_train,
    warmup_out=snakemake.output[0],
    warmup_size=snakemake.params.warmup_size,
    seed=snakemake.params.seed,
)
