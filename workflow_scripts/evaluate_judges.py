from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.evaluate_judges(
    eval=snakemake.input.eval, clean=snakemake.input.clean, corrupted=snakemake.input.corrupted, out=snakemake.output[0]
)
