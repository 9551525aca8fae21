# Study 2 policies: warm-up SFT on correct answers, SFT on poisoned demonstrations, RL against the corrupted judge.
# With more than one GPU a rule launches its training through `accelerate launch` (envs/accelerate/*.yaml).


rule warmup:
    input:
        data="results/deception/data/warmup.csv",
        model=policy_files,
    output:
        directory("results/deception/policies/warmup/{policy}"),
    params:
        model=policy_entry,
        train=DEC["warmup"],
        seed=DEC["seed"],
        launch=LAUNCH,
    log:
        "logs/deception/policies/warmup/{policy}.log",
    benchmark:
        "benchmarks/deception/policies/warmup/{policy}.tsv"
    threads: 2
    resources:
        gpu=res_gpu("warmup"),
        cpus_per_gpu=res_cpus_per_gpu("warmup"),
        mem_mb=res_mem("warmup"),
        runtime=res_runtime("warmup"),
        **multinode_resources("warmup"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_policy.py"


rule sft:
    input:
        data="results/deception/data/sft_p{level}.csv",
        model=policy_files,
    output:
        directory("results/deception/policies/sft/{policy}/p{level}"),
    params:
        model=policy_entry,
        train=DEC["sft"],
        seed=DEC["seed"],
        launch=LAUNCH,
    log:
        "logs/deception/policies/sft/{policy}/p{level}.log",
    benchmark:
        "benchmarks/deception/policies/sft/{policy}/p{level}.tsv"
    threads: 2
    resources:
        gpu=res_gpu("sft"),
        cpus_per_gpu=res_cpus_per_gpu("sft"),
        mem_mb=res_mem("sft"),
        runtime=res_runtime("sft"),
        **multinode_resources("sft"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_policy.py"


rule rl:
    input:
        prompts="results/deception/data/rl_prompts_p{level}.csv",
        eval="results/deception/data/rl_eval_p{level}.csv",
        start="results/deception/policies/warmup/{policy}",
        judge=judge_dir("corrupted"),
    output:
        directory("results/deception/policies/rl/{policy}/p{level}"),
    params:
        model=policy_entry,
        train=DEC["rl"],
        seed=DEC["seed"],
        launch=LAUNCH,
    log:
        "logs/deception/policies/rl/{policy}/p{level}.log",
    benchmark:
        "benchmarks/deception/policies/rl/{policy}/p{level}.tsv"
    threads: 2
    resources:
        gpu=res_gpu("rl"),
        cpus_per_gpu=res_cpus_per_gpu("rl"),
        mem_mb=res_mem("rl"),
        runtime=res_runtime("rl"),
        **multinode_resources("rl"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_rl.py"
