# Study 1 figures (plotnine), listed in `snakemake --report`. Cheap: run locally even on a cluster.


localrules:
    plot_scaling_mwe,
    plot_bias_mwe,


rule plot_scaling_mwe:
    input:
        MWE_TABLES,
    output:
        report(
            MWE_SCALING_PLOT,
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
        MWE_TABLES,
    output:
        report(
            MWE_BIAS_PLOT,
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
