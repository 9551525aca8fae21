from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.judge_data(
    **{k: snakemake.input[k] for k in ("mrc_train", "mrc_val", "fruit_train", "fruit_eval")},
    train_out=snakemake.output.train,
    val_out=snakemake.output.val,
    **{k: snakemake.params[k] for k in ("fruit_percent", "train_size", "val_size", "seed")},
)
