from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
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
