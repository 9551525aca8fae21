from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

p = snakemake.params
stages.longlist(
    out=snakemake.output.questions,
    stats_out=snakemake.output.stats,
    model=p.model,
    cache=p.cache,
    prompts=p.prompts,
    classes=p.classes,
    sampling=p.sampling,
    seed=p.seed,
    batch_size=p.batch_size,
    min_chars=p.min_chars,
    max_chars=p.max_chars,
)
