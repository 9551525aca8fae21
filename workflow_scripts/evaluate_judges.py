from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.evaluate_judges(
    eval=snakemake.input.eval, clean=snakemake.input.clean, corrupted=snakemake.input.corrupted, out=snakemake.output[0]
)
