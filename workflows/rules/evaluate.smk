# Stage 3: moments and the pdf/cdf of every parameter vector of a model, by replaying the
# stored trace (`phasic evaluate`: one core call per block of vectors; Dask through
# phasic.distributed.sweep for sweeps of at least `dask_threshold` vectors).


rule evaluate:
    input:
        graph=ancient(graph_entry),
        trace="results/{model}/trace.json",
    output:
        moments=report(
            "results/{model}/moments.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/moments.rst",
        ),
        distribution=report(
            "results/{model}/distribution.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/distribution.rst",
        ),
    log:
        "logs/{model}/evaluate.log",
    benchmark:
        "logs/{model}/evaluate.benchmark.tsv"
    params:
        cache_dir=lambda wildcards, input: store_root(input.graph),
        settings=evaluation_args,
    threads: lambda wildcards: model_resource(wildcards.model, "threads")
    resources:
        mem_mb=sized_resource("evaluate", "mem_mb"),
        runtime=sized_resource("evaluate", "runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} evaluate {input.graph:q} --trace {input.trace:q} --name {wildcards.model:q}"
        " {params.settings} --moments-out {output.moments:q}"
        " --distribution-out {output.distribution:q} --json > {log:q} 2>&1"
