from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.train_rl(
    prompts=snakemake.input.prompts,
    eval=snakemake.input.eval,
    start=snakemake.input.start,
    judge=snakemake.input.judge,
    out=snakemake.output[0],
    train=snakemake.params.train,
    seed=snakemake.params.seed,
    gpus=snakemake.resources.gpu,
    nodes=snakemake.resources.get("nodes", 1),
    launch=snakemake.params.launch,
)
