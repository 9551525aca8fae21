from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.train_policy(
    data=snakemake.input.data,
    out=snakemake.output[0],
    model=snakemake.params.model,
    train=snakemake.params.train,
    seed=snakemake.params.seed,
    gpus=snakemake.resources.gpu,
    nodes=snakemake.resources.get("nodes", 1),
    launch=snakemake.params.launch,
)
