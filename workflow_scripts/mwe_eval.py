from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

p = snakemake.params
stages.evaluate_model(
    dataset=snakemake.input.dataset,
    out=snakemake.output[0],
    model=p.model,
    cache=p.cache,
    body=p.body,
    template=p.template,
    top_k=p.top_k,
    batch_size=p.batch_size,
    answer_format=getattr(p, "answer_format", None),  # rule mwe_eval_format
)
