# Study 2 figures (plotnine), listed in `snakemake --report`.


localrules:
    plot_scaling_technique,
    plot_truth_vs_evaluated,
    plot_reaffirmation,
    deception_table,
    deception_technique_table,
    deception_reaffirm_table,


rule plot_scaling_technique:
    input:
        "results/deception/tables/{technique}.csv",
    output:
        report(
            "results/plots/scaling_{technique}.png",
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
        "results/deception/tables/results.csv",
    output:
        report(
            "results/plots/truth_vs_evaluated.png",
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
        "results/deception/tables/reaffirmation.csv",
    output:
        report(
            "results/plots/reaffirmation.png",
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
