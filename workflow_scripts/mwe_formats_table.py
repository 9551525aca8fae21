from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

p = snakemake.params
stages.formats_table(
    datasets=dict(zip(p.datasets, snakemake.input.datasets)),
    formats=p.formats,
    classes=p.classes,
    responses={tuple(k): path for k, path in zip(p.order, snakemake.input.responses)},
    models={m["name"]: m for m in p.models},
    bootstrap=p.bootstrap,
    out=snakemake.output[0],
)
