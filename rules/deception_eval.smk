# Study 2 evaluation: policies answer the no-leakage set, both judges score; tables; reaffirmation.


rule deception_eval:
    # One job per checkpoint (one model load) of a training seed: answers at every number of shots, both judges'
    # scores for each answer, and the reaffirmation option log-probs.
    input:
        policy=eval_checkpoint,
        eval=EVAL_SET,
        fewshot=FEWSHOT,
        questions=REAFFIRMATION_SET,
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        answers=expand(ANSWERS, policy="{policy}", technique="{technique}", seed="{seed}", run="{run}", shots=SHOTS),
        reaffirmation=REAFFIRMATION,
    params:
        model=eval_entry,
        technique="{technique}",
        level=eval_level,
        seed=training_seed,
        shots=SHOTS,
        max_new_tokens=DEC["eval"]["max_new_tokens"],
        cache=CACHE,
    wildcard_constraints:
        technique="warmup|sft|rl",
        run=r"untuned|p[0-9.]+",
    log:
        "logs/deception/eval/{policy}/{technique}/seed{seed}/{run}.log",
    threads: 1
    resources:
        **inference_resources(wildcard="policy", hf_gpus=1, mem_mb=8000),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_eval.py"


use rule deception_eval as deception_eval_base with:
    # The untuned registry model: no training seed, one job per policy.
    input:
        policy=files_of("policy"),
        eval=EVAL_SET,
        fewshot=FEWSHOT,
        questions=REAFFIRMATION_SET,
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        answers=expand(BASE_ANSWERS, policy="{policy}", shots=SHOTS),
        reaffirmation=BASE_REAFFIRMATION,
    params:  # replaces these four; the others are deception_eval's
        model=entry_of("policy"),
        technique="base",
        level=None,
        seed=None,
    log:
        "logs/deception/eval/{policy}/base/untuned.log",


localrules:
    deception_table,
    deception_technique_table,
    deception_reaffirm_table,


rule deception_table:
    input:
        deception_answer_files(),
    output:
        aggregated=report(
            RESULTS_TABLE,
            caption="../report/deception_table.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
        by_seed=RESULTS_BY_SEED_TABLE,
        tidy=RESULTS_TIDY_TABLE,
    params:
        models={p: model_entry(p) for p in POLICIES},
        bootstrap=DEC["eval"]["bootstrap"],
    log:
        "logs/deception/tables/results.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_table.py"


rule deception_technique_table:
    input:
        deception_technique_answers,
    output:
        report(
            TECHNIQUE_TABLE,
            caption="../report/technique_table.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
    params:
        models={p: model_entry(p) for p in POLICIES},
        bootstrap=DEC["eval"]["bootstrap"],
    log:
        "logs/deception/tables/{technique}.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_table.py"


rule deception_reaffirm_table:
    input:
        reaffirmation_files(),
    output:
        report(
            REAFFIRMATION_TABLE,
            caption="../report/reaffirmation.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
    params:
        models={p: model_entry(p) for p in POLICIES},
        bootstrap=DEC["eval"]["bootstrap"],
    log:
        "logs/deception/tables/reaffirmation.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_reaffirm_table.py"
