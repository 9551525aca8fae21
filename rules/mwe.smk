# Study 1: model-written "harsh truth" evals.
# longlist -> label check -> shortlist(+strict) -> harsh check -> final(+strict) -> eval ladder -> tables


rule mwe_longlist:
    input:
        model=model_files(MWE["longlist"]["generator"]),
    output:
        questions=mwe_list("longlist"),
        stats="results/mwe/longlist_stats.json",
    params:
        model=model_entry(MWE["longlist"]["generator"]),
        prompts=MWE["longlist"]["prompts"],
        classes=MWE["classes"],
        sampling=MWE["longlist"]["sampling"],
        seed=MWE["longlist"]["seed"],
        batch_size=MWE["longlist"]["batch_size"],
        min_chars=MWE["longlist"]["min_chars"],
        max_chars=MWE["longlist"]["max_chars"],
        cache=CACHE,
    log:
        "logs/mwe/longlist.log",
    benchmark:
        "benchmarks/mwe/longlist.tsv"
    threads: 2
    resources:
        **inference_resources(MWE["longlist"]["generator"], hf_gpus=1, runtime=120),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_longlist.py"


rule mwe_label_check:
    input:
        questions=mwe_list("longlist"),
        model=model_files(MWE["label_check"]["checker"]),
    output:
        MWE_LABEL_CHECK,
    params:
        model=model_entry(MWE["label_check"]["checker"]),
        body=verbatim(MWE["label_check"]["body"]),
        template=verbatim(MWE["label_check"]["template"]),
        top_k=MWE["label_check"]["top_k"],
        batch_size=MWE["label_check"]["batch_size"],
        cache=CACHE,
    log:
        "logs/mwe/label_check.log",
    benchmark:
        "benchmarks/mwe/label_check.tsv"
    threads: 2
    resources:
        **inference_resources(MWE["label_check"]["checker"], hf_gpus=1),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_label_check.py"


rule mwe_shortlist:
    input:
        MWE_LABEL_CHECK,
    output:
        shortlist=mwe_list("shortlist"),
        strict=mwe_list("shortlist_strict"),
    params:
        thresholds=MWE["label_check"]["strict_threshold"],
    log:
        "logs/mwe/shortlist.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_shortlist.py"


rule mwe_harsh_check:
    input:
        questions=mwe_list("shortlist{strict}"),
        model=model_files(MWE["harsh_check"]["checker"]),
    output:
        mwe_list("final{strict}"),
    params:
        model=model_entry(MWE["harsh_check"]["checker"]),
        body=verbatim(MWE["harsh_check"]["body"]),
        template=verbatim(MWE["harsh_check"]["template"]),
        classes=MWE["harsh_check"]["classes"],
        keep=MWE["harsh_check"]["keep"],
        rule=MWE["harsh_check"]["rule"],
        top_k=MWE["harsh_check"]["top_k"],
        batch_size=MWE["harsh_check"]["batch_size"],
        balance=MWE["harsh_check"]["balance"],
        balance_seed=MWE["harsh_check"]["balance_seed"],
        cache=CACHE,
    wildcard_constraints:
        strict="|_strict",
    log:
        "logs/mwe/harsh_check{strict}.log",
    benchmark:
        "benchmarks/mwe/harsh_check{strict}.tsv"
    threads: 2
    resources:
        **inference_resources(MWE["harsh_check"]["checker"], hf_gpus=1),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_harsh_check.py"


rule mwe_negate:
    # The negated twins of one dataset: written by an LM (cached) or read from a file of hand-written ones.
    input:
        dataset=mwe_dataset_file,
        extra=mwe_negation_inputs,
    output:
        MWE_TWINS,
    params:
        source=NEG["source"],
        model=model_entry(NEG_GENERATOR) if NEG_GENERATOR else None,
        prompt=verbatim(NEG["prompt"]),
        sampling=NEG["sampling"],
        batch_size=NEG["batch_size"],
        min_chars=NEG["min_chars"],
        max_chars=NEG["max_chars"],
        min_overlap=NEG["min_overlap"],
        cache=CACHE,
    wildcard_constraints:
        dataset=alternatives(NEGATED),
    log:
        "logs/mwe/negate/{dataset}.log",
    benchmark:
        "benchmarks/mwe/negate/{dataset}.tsv"
    threads: 2
    resources:
        **(inference_resources(NEG_GENERATOR, hf_gpus=1) if NEG_GENERATOR else {}),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_negate.py"


rule mwe_eval:
    input:
        dataset=mwe_dataset_file,
        model=files_of("model"),
    output:
        MWE_RESPONSES,
    params:
        model=entry_of("model"),
        body=verbatim(MWE["eval"]["body"]),
        template=verbatim(MWE["eval"]["template"]),
        top_k=MWE["eval"]["top_k"],
        batch_size=MWE["eval"]["batch_size"],
        cache=CACHE,
    log:
        "logs/mwe/eval/{dataset}/{model}.log",
    benchmark:
        "benchmarks/mwe/eval/{dataset}/{model}.tsv"
    threads: 2
    resources:
        **inference_resources(wildcard="model", hf_gpus=1),
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_eval.py"


use rule mwe_eval as mwe_eval_format with:
    # The same items under answer format {answer_format} (mwe.eval.formats): its template, body and classes.
    output:
        MWE_FORMAT_RESPONSES,
    params:  # replaces these three and adds answer_format; the others are mwe_eval's
        body=mwe_format_body,
        template=mwe_format_template,
        answer_format=mwe_format,
    log:
        "logs/mwe/formats/{answer_format}/{dataset}/{model}.log",
    benchmark:
        "benchmarks/mwe/formats/{answer_format}/{dataset}/{model}.tsv"


localrules:
    mwe_table,
    mwe_formats_table,


rule mwe_formats_table:
    input:
        datasets=[mwe_dataset_path(d) for d in MWE_FORMAT_DATASETS],
        responses=[MWE_FORMAT_RESPONSES.format(dataset=d, answer_format=f, model=m) for d, f, m in MWE_FORMAT_KEYS],
    output:
        report(
            MWE_FORMAT_TABLE,
            caption="../report/mwe_formats.rst",
            category="Study 1: harsh-truth evals",
            subcategory="tables",
        ),
    params:
        datasets=MWE_FORMAT_DATASETS,
        order=MWE_FORMAT_KEYS,
        formats={name: f["classes"] for name, f in MWE_FORMATS.items()},
        classes=MWE["classes"],
        models=mwe_eval_models(None),
        bootstrap=MWE["bootstrap"],
    log:
        "logs/mwe/tables/formats.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_formats_table.py"


rule mwe_table:
    input:
        dataset=mwe_dataset_file,
        responses=mwe_responses,
        twins=mwe_twins,
        twin_responses=mwe_twin_responses,
    output:
        report(
            MWE_TABLE,
            caption="../report/mwe_table.rst",
            category="Study 1: harsh-truth evals",
            subcategory="tables",
            labels={"dataset": "{dataset}"},
        ),
    params:
        models=mwe_eval_models,
        bootstrap=MWE["bootstrap"],
    log:
        "logs/mwe/tables/{dataset}.log",
    conda:
        "../envs/talltales.yaml"
    script:
        "../workflow_scripts/mwe_table.py"
