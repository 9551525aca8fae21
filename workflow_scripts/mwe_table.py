from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

models = snakemake.params.models
stages.table(
    dataset=snakemake.input.dataset,
    dataset_name=snakemake.wildcards.dataset,
    responses={m["name"]: path for m, path in zip(models, snakemake.input.responses)},
    models={m["name"]: m for m in models},
    bootstrap=snakemake.params.bootstrap,
    out=snakemake.output[0],
)
