from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

p = snakemake.params
stages.harsh_check(
    shortlist_path=snakemake.input.questions,
    out=snakemake.output[0],
    model=p.model,
    cache=p.cache,
    body=p.body,
    template=p.template,
    classes=p.classes,
    keep=p.keep,
    rule=p.rule,
    top_k=p.top_k,
    batch_size=p.batch_size,
    balance=p.balance,
    balance_seed=p.balance_seed,
)
