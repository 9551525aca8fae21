# Study 2 evaluation: policies answer the no-leakage set, both judges score; tables; reaffirmation.


rule deception_answers_trained:
    input:
        policy=trained_policy,
        eval="results/deception/data/eval_noleak.csv",
        fewshot="results/deception/data/fewshot.json",
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        "results/deception/answers/{policy}/{technique}/p{level}_s{shots}.csv",
    params:
        model=trained_entry,
        max_new_tokens=DEC["eval"]["max_new_tokens"],
        cache=CACHE,
    log:
        "logs/deception/answers/{policy}/{technique}/p{level}_s{shots}.log",
    threads: 2
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_answers.py"


rule deception_answers_untuned:
    input:
        policy=untuned_policy,
        eval="results/deception/data/eval_noleak.csv",
        fewshot="results/deception/data/fewshot.json",
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        "results/deception/answers/{policy}/{stage}/untuned_s{shots}.csv",
    params:
        model=untuned_entry,
        max_new_tokens=DEC["eval"]["max_new_tokens"],
        cache=CACHE,
    wildcard_constraints:
        stage="base|warmup",
    log:
        "logs/deception/answers/{policy}/{stage}/untuned_s{shots}.log",
    threads: 2
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_answers.py"


rule deception_reaffirm_trained:
    input:
        policy=trained_policy,
        questions="results/deception/data/reaffirmation.csv",
    output:
        "results/deception/reaffirmation/{policy}/{technique}/p{level}.csv",
    params:
        model=trained_entry,
    log:
        "logs/deception/reaffirmation/{policy}/{technique}/p{level}.log",
    threads: 2
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_reaffirm.py"


rule deception_reaffirm_untuned:
    input:
        policy=untuned_policy,
        questions="results/deception/data/reaffirmation.csv",
    output:
        "results/deception/reaffirmation/{policy}/{stage}/untuned.csv",
    params:
        model=untuned_entry,
    wildcard_constraints:
        stage="base|warmup",
    log:
        "logs/deception/reaffirmation/{policy}/{stage}/untuned.log",
    threads: 2
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_reaffirm.py"


rule deception_table:
    input:
        deception_answer_files(),
    output:
        report(
            "results/deception/tables/results.csv",
            caption="../report/deception_table.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
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
        "results/deception/tables/{technique}.csv",
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
            "results/deception/tables/reaffirmation.csv",
            caption="../report/reaffirmation.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
    params:
        models={p: model_entry(p) for p in POLICIES},
    log:
        "logs/deception/tables/reaffirmation.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_reaffirm_table.py"
