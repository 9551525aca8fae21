from talltales.logs import start_job

start_job(snakemake)
from talltales.mwe import stages

models = snakemake.params.models
names = [m["name"] for m in models]
stages.table(
    dataset=snakemake.input.dataset,
    dataset_name=snakemake.wildcards.dataset,
    responses=dict(zip(names, snakemake.input.responses)),
    models={m["name"]: m for m in models},
    bootstrap=snakemake.params.bootstrap,
    out=snakemake.output[0],
    twins={"dataset": snakemake.input.twins[0], "responses": dict(zip(names, snakemake.input.twin_responses))}
    if snakemake.input.twins else None,
)
