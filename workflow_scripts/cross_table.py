from talltales.logs import start_job

start_job(snakemake)
from talltales import cross

p = snakemake.params
cross.table(
    datasets=dict(zip(p.names, snakemake.input.datasets)),
    runs=p.runs,
    responses=list(snakemake.input.responses),
    models=p.models,
    bootstrap=p.bootstrap,
    out=snakemake.output[0],
)
