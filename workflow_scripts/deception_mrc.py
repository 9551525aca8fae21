from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.mrc(
    train_out=snakemake.output.train,
    val_out=snakemake.output.val,
    report_out=snakemake.output.report,
    mrc=snakemake.params.mrc,
    synthetic=snakemake.params.synthetic,
    seed=snakemake.params.seed,
    backbone=snakemake.params.backbone,
    answerability=snakemake.params.answerability,
    cache=snakemake.params.cache,
)
