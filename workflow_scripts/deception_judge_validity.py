from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import validity

validity.judge_validity(answers=list(snakemake.input), out=snakemake.output[0], bootstrap=snakemake.params.bootstrap)
