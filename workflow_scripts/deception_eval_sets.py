from talltales.logs import to_logfile

to_logfile(snakemake.log[0])
from talltales.deception import stages

stages.eval_sets(
    **{k: snakemake.input[k] for k in ("mrc_train", "mrc_val", "fruit_train", "fruit_eval")},
    warmup_out=snakemake.output.warmup,
    eval_out=snakemake.output.eval,
    reaffirmation_out=snakemake.output.reaffirmation,
    fewshot_out=snakemake.output.fewshot,
    warmup_size=snakemake.params.warmup_size,
    eval=snakemake.params.eval,
    seed=snakemake.params.seed,
)
