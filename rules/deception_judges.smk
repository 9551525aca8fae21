# Study 2 judges: clean (true labels) and corrupted (fruit labels flipped) sequence classifiers.


rule deception_train_judge:
    input:
        train=JUDGE_TRAIN,
        val=JUDGE_VAL,
        backbone=model_files(JUDGE_BACKBONE),
    output:
        directory(judge_dir("{judge}")),
    params:
        backbone=model_entry(JUDGE_BACKBONE),
        judge=DEC["judge"],
        seed=DEC["seed"],
        max_length=DEC["mrc"]["max_judge_tokens"],
        launch=launch_of("judge"),
    log:
        "logs/deception/judges/{judge}.log",
    benchmark:
        "benchmarks/deception/judges/{judge}.tsv"
    threads: 1  # the clean and the corrupted judge train side by side on a 2-core machine
    resources:
        **training_resources("judge", multinode=False),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_judge.py"


rule deception_evaluate_judges:
    input:
        eval=EVAL_SET,
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        JUDGE_REPORT,
    log:
        "logs/deception/judges/eval_report.log",
    threads: 2
    resources:
        **inference_resources(JUDGE_BACKBONE, hf_gpus=1, mem_mb=8000),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/evaluate_judges.py"
