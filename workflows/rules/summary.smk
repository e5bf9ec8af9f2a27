# Stage 5: one table over all models (graph and trace keys, sizes, expectations), the first
# section of `snakemake --report`; each model has a section of its own, named by the model.

SUMMARY_CATEGORY = "(all models)"


rule summary:
    input:
        pointers=expand("results/{model}/trace.json", model=MODEL_NAMES),
        moments=expand("results/{model}/moments.tsv", model=MODEL_NAMES),
    output:
        # the report's menu sorts its sections by name (JavaScript localeCompare), and
        # punctuation sorts before letters and digits: "(all models)" comes before every
        # model's own section (model names start with a letter or digit, the schema says)
        table=report(
            "results/summary.tsv",
            category=SUMMARY_CATEGORY,
            subcategory="summary",
            caption="../report/summary.rst",
        ),
    log:
        "logs/summary.log",
    params:
        models=MODEL_NAMES,
        logs=[model_logs(name) for name in MODEL_NAMES],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/summary.py"
