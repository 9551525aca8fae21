# Study 2 judge validity: each judge's agreement with the oracle truth on the policies' own answers.


localrules:
    deception_judge_validity,
    plot_judge_validity,


rule deception_judge_validity:
    input:
        deception_answer_files(),
    output:
        report(
            JUDGE_VALIDITY_TABLE,
            caption="../report/judge_validity.rst",
            category="Study 2: Tall Tales",
            subcategory="tables",
        ),
    params:
        bootstrap=DEC["eval"]["bootstrap"],
    log:
        "logs/deception/tables/judge_validity.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/deception_judge_validity.py"


rule plot_judge_validity:
    input:
        JUDGE_VALIDITY_TABLE,
    output:
        report(
            JUDGE_VALIDITY_PLOT,
            caption="../report/judge_validity_plot.rst",
            category="Study 2: Tall Tales",
            subcategory="figures",
        ),
    log:
        "logs/plots/judge_validity.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/plot_judge_validity.py"
