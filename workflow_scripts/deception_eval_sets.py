from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.eval_sets(
    **{k: snakemake.input[k] for k in ("mrc_train", "mrc_val", "fruit_train", "fruit_eval")},
    eval_out=snakemake.output.eval,
    reaffirmation_out=snakemake.output.reaffirmation,
    fewshot_out=snakemake.output.fewshot,
    **{k: snakemake.params[k] for k in ("n_fruit", "n_other", "min_passages", "reaffirmation_per_quadrant", "seed")},
)
