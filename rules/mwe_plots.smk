# Study 1 figures (plotnine), listed in `snakemake --report`. Cheap: run locally even on a cluster.


localrules:
    plot_scaling_mwe,
    plot_bias_mwe,
    plot_negation_mwe,
    plot_formats_mwe,


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


rule plot_negation_mwe:
    input:
        expand(MWE_TABLE, dataset=NEGATED),
    output:
        report(
            MWE_NEGATION_PLOT,
            caption="../report/negation_mwe.rst",
            category="Study 1: harsh-truth evals",
            subcategory="figures",
        ),
    log:
        "logs/plots/negation_mwe.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_negation_mwe.py"


rule plot_formats_mwe:
    input:
        MWE_FORMAT_TABLE,
    output:
        report(
            MWE_FORMAT_PLOT,
            caption="../report/formats_mwe.rst",
            category="Study 1: harsh-truth evals",
            subcategory="figures",
        ),
    log:
        "logs/plots/formats_mwe.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_formats_mwe.py"
