from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.evaluate_checkpoint(
    eval=snakemake.input.eval,
    fewshot=snakemake.input.fewshot,
    clean=snakemake.input.clean,
    corrupted=snakemake.input.corrupted,
    questions=snakemake.input.questions,
    answers_out=list(snakemake.output.answers),
    reaffirm_out=snakemake.output.reaffirmation,
    model=snakemake.params.model,
    technique=snakemake.params.technique,
    level=snakemake.params.level,
    seed=snakemake.params.seed,
    shots=[int(s) for s in snakemake.params.shots],
    max_new_tokens=snakemake.params.max_new_tokens,
    cache=snakemake.params.cache,
)
