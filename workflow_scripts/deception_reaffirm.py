from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

w = snakemake.wildcards
stages.reaffirm(
    questions=snakemake.input.questions,
    out=snakemake.output[0],
    model=snakemake.params.model,
    technique=w.get("technique", w.get("stage")),
    level=w.get("level"),
)
