from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.train_judge(
    train=snakemake.input.train,
    val=snakemake.input.val,
    out=snakemake.output[0],
    labels=snakemake.wildcards.judge,
    backbone=snakemake.params.backbone,
    judge=snakemake.params.judge,
    seed=snakemake.params.seed,
    gpus=snakemake.resources.gpu,
)
