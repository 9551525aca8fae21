from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.train_policy(
    data=snakemake.input.data,
    out=snakemake.output[0],
    model=snakemake.params.model,
    train=snakemake.params.train,
    seed=snakemake.params.seed,
    gpus=snakemake.resources.gpu,
    launch=snakemake.params.launch,
)
