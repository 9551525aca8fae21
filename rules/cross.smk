# The two studies joined: study-2 checkpoints answer study 1's lists (names in rules/cross_common.smk).


rule cross_eval:
    # One checkpoint of study 2 on one list of study 1, scored as study 1 scores its ladder.
    input:
        dataset=mwe_dataset_file,
        model=eval_checkpoint,
    output:
        CROSS_RESPONSES,
    params:
        model=cross_entry,
        body=verbatim(MWE["eval"]["body"]),
        template=verbatim(MWE["eval"]["template"]),
        top_k=MWE["eval"]["top_k"],
        batch_size=MWE["eval"]["batch_size"],
        cache=CACHE,
    wildcard_constraints:
        dataset=alternatives(CROSS_DATASETS),
        technique="warmup|sft|rl",
        run=r"untuned|p[0-9.]+",
    log:
        "logs/cross/{dataset}/{policy}/{technique}/seed{seed}/{run}.log",
    threads: 2
    resources:
        **inference_resources(wildcard="policy", hf_gpus=1),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_eval.py"


use rule cross_eval as cross_eval_base with:
    # The untuned registry model of a policy (no training seed).
    input:
        dataset=mwe_dataset_file,
        model=files_of("policy"),
    output:
        CROSS_BASE_RESPONSES,
    params:
        model=entry_of("policy"),
    log:
        "logs/cross/{dataset}/{policy}/base/untuned.log",


localrules:
    cross_table,
    plot_cross_study,


rule cross_table:
    input:
        datasets=[mwe_dataset_path(d) for d in CROSS_DATASETS],
        responses=[f for _, f in cross_runs()],
    output:
        report(
            CROSS_TABLE,
            caption="../report/cross_table.rst",
            category="Both studies",
            subcategory="tables",
        ),
    params:
        names=CROSS_DATASETS,
        runs=[r for r, _ in cross_runs()],
        models={p: model_entry(p) for p in POLICIES},
        bootstrap=MWE["bootstrap"],
    log:
        "logs/cross/table.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/cross_table.py"


rule plot_cross_study:
    input:
        CROSS_TABLE,
    output:
        report(
            CROSS_PLOT,
            caption="../report/cross_study.rst",
            category="Both studies",
            subcategory="figures",
        ),
    log:
        "logs/plots/cross_study.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_cross_study.py"
