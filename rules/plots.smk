# Figures (plotnine), listed in `snakemake --report`. Cheap: run locally even on a cluster.


localrules:
    plot_scaling_mwe,
    plot_bias_mwe,
    mwe_table,


rule plot_scaling_mwe:
    input:
        mwe_tables(),
    output:
        report(
            "results/plots/scaling_mwe.png",
            caption="../report/scaling_mwe.rst",
            category="Study 1: harsh-truth evals",
            subcategory="figures",
        ),
    log:
        "logs/plots/scaling_mwe.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_scaling_mwe.py"


rule plot_bias_mwe:
    input:
        mwe_tables(),
    output:
        report(
            "results/plots/bias_mwe.png",
            caption="../report/bias_mwe.rst",
            category="Study 1: harsh-truth evals",
            subcategory="figures",
        ),
    log:
        "logs/plots/bias_mwe.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_bias_mwe.py"
