# Study 2 policies: warm-up SFT on correct answers, SFT on poisoned demonstrations, RL against the corrupted judge.
# Each runs once per training seed (deception.seeds, wildcard {seed}); the judges and data are shared by all seeds.
# With more than one GPU a rule launches its training through `accelerate launch` (envs/accelerate/*.yaml).


rule deception_warmup:
    input:
        data=WARMUP_DATA,
        model=files_of("policy"),
    output:
        directory(policy_dir("warmup")),
    params:
        model=entry_of("policy"),
        train=policy_settings("warmup"),
        seed=training_seed,
        launch=launch_of("warmup"),
    log:
        "logs/deception/policies/warmup/{policy}/seed{seed}.log",
    benchmark:
        "benchmarks/deception/policies/warmup/{policy}/seed{seed}.tsv"
    threads: 1  # two training jobs side by side on a 2-core machine train faster than one on two threads
    resources:
        **training_resources("warmup"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_policy.py"


rule deception_sft:
    input:
        data=SFT_DATA,
        model=files_of("policy"),
    output:
        directory(policy_dir("sft")),
    params:
        model=entry_of("policy"),
        train=policy_settings("sft"),
        seed=training_seed,
        launch=launch_of("sft"),
    log:
        "logs/deception/policies/sft/{policy}/seed{seed}/p{level}.log",
    benchmark:
        "benchmarks/deception/policies/sft/{policy}/seed{seed}/p{level}.tsv"
    threads: 1  # two training jobs side by side on a 2-core machine train faster than one on two threads
    resources:
        **training_resources("sft"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_policy.py"


rule deception_rl:
    input:
        prompts=RL_PROMPTS,
        eval=RL_EVAL,
        start=policy_dir("warmup"),
        judge=judge_dir("corrupted"),
    output:
        directory(policy_dir("rl")),
    params:
        train=policy_settings("rl"),
        seed=training_seed,
        launch=launch_of("rl"),
    log:
        "logs/deception/policies/rl/{policy}/seed{seed}/p{level}.log",
    benchmark:
        "benchmarks/deception/policies/rl/{policy}/seed{seed}/p{level}.tsv"
    threads: 1  # two training jobs side by side on a 2-core machine train faster than one on two threads
    resources:
        **training_resources("rl"),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/train_rl.py"
