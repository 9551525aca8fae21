from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.fruit(
    train_out=snakemake.output.train,
    eval_out=snakemake.output.eval,
    fruit=snakemake.params.fruit,
    synthetic=snakemake.params.synthetic,
    seed=snakemake.params.seed,
    generator=snakemake.params.generator,
    cache=snakemake.params.cache,
)
