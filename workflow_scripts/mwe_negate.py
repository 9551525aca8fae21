from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

p = snakemake.params
stages.negate(
    dataset=snakemake.input.dataset,
    out=snakemake.output[0],
    source=p.source,
    model=p.model,
    cache=p.cache,
    prompt=p.prompt,
    sampling=p.sampling,
    batch_size=p.batch_size,
    file=snakemake.input.extra[0] if p.source == "file" else None,
    min_chars=p.min_chars,
    max_chars=p.max_chars,
    min_overlap=p.min_overlap,
)
