# Stage 5: one table over all models (graph and trace keys, sizes, expectations).


rule summary:
    input:
        pointers=expand("results/{model}/trace.json", model=MODEL_NAMES),
        moments=expand("results/{model}/moments.tsv", model=MODEL_NAMES),
    output:
        table=report("results/summary.tsv", category="Summary", caption="../report/summary.rst"),
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
