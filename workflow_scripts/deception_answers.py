from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

w = snakemake.wildcards
stages.answers(
    eval=snakemake.input.eval,
    fewshot=snakemake.input.fewshot,
    clean=snakemake.input.clean,
    corrupted=snakemake.input.corrupted,
    out=snakemake.output[0],
    model=snakemake.params.model,
    technique=w.get("technique", w.get("stage")),
    level=w.get("level"),
    shots=int(w.shots),
    max_new_tokens=snakemake.params.max_new_tokens,
    cache=snakemake.params.cache,
)
