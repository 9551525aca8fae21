# Study 2 judges: clean (true labels) and corrupted (fruit labels flipped) sequence classifiers.


rule train_judge:
    input:
        train="results/deception/data/judge_train.csv",
        val="results/deception/data/judge_val.csv",
        backbone=model_files(JUDGE_BACKBONE),
    output:
        directory("results/deception/judges/{judge}"),
    params:
        backbone=model_entry(JUDGE_BACKBONE),
        judge=DEC["judge"],
        seed=DEC["seed"],
    log:
        "logs/deception/judges/{judge}.log",
    benchmark:
        "benchmarks/deception/judges/{judge}.tsv"
    threads: 1  # the clean and the corrupted judge train side by side on a 2-core machine
    resources:
        gpu=res_gpu("judge"),
        cpus_per_gpu=res_cpus_per_gpu("judge"),
        mem_mb=res_mem("judge"),
        runtime=res_runtime("judge"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_judge.py"


rule evaluate_judges:
    input:
        eval="results/deception/data/eval_noleak.csv",
        clean=judge_dir("clean"),
        corrupted=judge_dir("corrupted"),
    output:
        "results/deception/judges/eval_report.json",
    log:
        "logs/deception/judges/eval_report.log",
    threads: 2
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/evaluate_judges.py"
