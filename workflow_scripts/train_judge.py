from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.train_judge(
    train=snakemake.input.train,
    val=snakemake.input.val,
    out=snakemake.output[0],
    labels=snakemake.wildcards.judge,
    backbone=snakemake.params.backbone,
    judge=snakemake.params.judge,
    seed=snakemake.params.seed,
    max_length=snakemake.params.max_length,
    gpus=snakemake.resources.gpu,
    launch=snakemake.params.launch,
)
