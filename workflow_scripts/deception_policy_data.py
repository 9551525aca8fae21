from talltales.logs import start_job

start_job(snakemake)
from talltales.deception import stages

stages.policy_data(
    **{k: snakemake.input[k] for k in ("mrc_train", "mrc_val", "fruit_train", "fruit_eval", "eval_set")},
    sft_out=snakemake.output.sft,
    rl_prompts_out=snakemake.output.rl_prompts,
    rl_eval_out=snakemake.output.rl_eval,
    level=snakemake.params.level,
    sft_size=snakemake.params.sft_size,
    rl_prompts=snakemake.params.rl_prompts,
    rl_eval_prompts=snakemake.params.rl_eval_prompts,
    seed=snakemake.params.seed,
)
