# Study 2 figures (plotnine), listed in `snakemake --report`.


localrules:
    plot_scaling_technique,
    plot_truth_vs_evaluated,
    plot_reaffirmation,
    plot_rl_curves,


rule plot_scaling_technique:
    input:
        TECHNIQUE_TABLE,
    output:
        report(
            SCALING_PLOT,
            caption="../report/scaling_deception.rst",
            category="Study 2: Tall Tales",
            subcategory="figures",
            labels={"technique": "{technique}"},
        ),
    log:
        "logs/plots/scaling_{technique}.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_scaling_deception.py"


rule plot_truth_vs_evaluated:
    input:
        RESULTS_TABLE,
    output:
        report(
            TRUTH_VS_EVALUATED_PLOT,
            caption="../report/truth_vs_evaluated.rst",
            category="Study 2: Tall Tales",
            subcategory="figures",
        ),
    log:
        "logs/plots/truth_vs_evaluated.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_truth_vs_evaluated.py"


rule plot_reaffirmation:
    input:
        REAFFIRMATION_TABLE,
    output:
        report(
            REAFFIRMATION_PLOT,
            caption="../report/reaffirmation_plot.rst",
            category="Study 2: Tall Tales",
            subcategory="figures",
        ),
    log:
        "logs/plots/reaffirmation.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_reaffirmation.py"


rule plot_rl_curves:
    input:
        rl_run_dirs(),
    output:
        report(
            RL_CURVES_PLOT,
            caption="../report/rl_curves.rst",
            category="Study 2: Tall Tales",
            subcategory="figures",
        ),
        table=report(
            RL_CURVES_TABLE,
            caption="../report/rl_curves_table.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
    params:
        runs=RL_RUNS,
    log:
        "logs/plots/rl_curves.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_rl_curves.py"
