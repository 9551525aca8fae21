# Study 2 data: MultiRC-format source, fruit (poison) items, mixtures per poisoning level, evaluation sets.


rule deception_mrc:
    input:
        mrc_inputs,
    output:
        train=MRC_TRAIN,
        val=MRC_VAL,
        report=f"{DATA}/mrc_report.json",
    params:
        mrc=MRC_SETTINGS,
        synthetic=DEC["synthetic"],
        seed=DEC["seed"],
        backbone=model_entry(JUDGE_BACKBONE),
        answerability=model_entry(ANSWERABILITY) if ANSWERABILITY else None,
        cache=CACHE,
    log:
        "logs/deception/data/mrc.log",
    resources:  # the answerability filter's LM, where one is set
        **(inference_resources(ANSWERABILITY, hf_gpus=1) if ANSWERABILITY else {}),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_mrc.py"


rule deception_fruit:
    input:
        fruit_inputs,
    output:
        train=FRUIT_TRAIN,
        eval=FRUIT_EVAL,
    params:
        fruit=DEC["fruit"],
        synthetic=DEC["synthetic"],
        seed=DEC["seed"],
        generator=model_entry(FRUIT_GENERATOR) if FRUIT_GENERATOR else None,
        cache=CACHE,
    log:
        "logs/deception/data/fruit.log",
    resources:  # the fruit generator's LM, where one is set
        **(inference_resources(FRUIT_GENERATOR, hf_gpus=1) if FRUIT_GENERATOR else {}),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_fruit.py"


rule deception_judge_data:
    input:
        **SOURCES,
    output:
        train=JUDGE_TRAIN,
        val=JUDGE_VAL,
    params:
        fruit_percent=DEC["judge"]["fruit_percent"],
        train_size=DEC["judge"]["train_size"],
        val_size=DEC["judge"]["val_size"],
        seed=DEC["seed"],
    log:
        "logs/deception/data/judge_data.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_judge_data.py"


rule deception_policy_data:
    input:
        **SOURCES,
        eval_set=EVAL_SET,
    output:
        sft=SFT_DATA,
        rl_prompts=RL_PROMPTS,
        rl_eval=RL_EVAL,
    params:
        level=level_value,
        sft_size=DEC["sft"]["size"],
        rl_prompts=DEC["rl"]["prompts"],
        rl_eval_prompts=DEC["rl"]["eval_prompts"],
        seed=DEC["seed"],
    log:
        "logs/deception/data/policy_data_p{level}.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_policy_data.py"


rule deception_warmup_data:
    input:
        mrc_train=MRC_TRAIN,
    output:
        WARMUP_DATA,
    params:
        warmup_size=DEC["warmup"]["size"],
        seed=DEC["seed"],
    log:
        "logs/deception/data/warmup.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_warmup_data.py"


rule deception_eval_sets:
    input:
        **SOURCES,
    output:
        eval=EVAL_SET,
        reaffirmation=REAFFIRMATION_SET,
        fewshot=FEWSHOT,
    params:
        n_fruit=DEC["eval"]["n_fruit"],
        n_other=DEC["eval"]["n_other"],
        min_passages=DEC["eval"]["min_passages"],
        reaffirmation_per_quadrant=DEC["eval"]["reaffirmation_per_quadrant"],
        seed=DEC["seed"],
    log:
        "logs/deception/data/eval_sets.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_eval_sets.py"
