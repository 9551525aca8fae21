from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.results_table(
    answers=list(snakemake.input),
    out=snakemake.output[0],
    models=snakemake.params.models,
    bootstrap=snakemake.params.bootstrap,
    by_seed_out=getattr(snakemake.output, "by_seed", None),  # deception_technique_table: one output
    tidy_out=getattr(snakemake.output, "tidy", None),
)
